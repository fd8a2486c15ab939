// Builds src/ into dist/: stamps the page with the environment and commit, and
// fingerprints nothing fancy, so the demo needs no packages from the registry.
const fs = require("fs");
const path = require("path");

const src = path.join(__dirname, "src");
const dist = path.join(__dirname, "dist");
fs.rmSync(dist, { recursive: true, force: true });
fs.mkdirSync(dist, { recursive: true });

const env = process.env.NUBES_ENV || process.env.GITHUB_REF_NAME || "local";
const commit = (process.env.GITHUB_SHA || "").slice(0, 12) || "uncommitted";
for (const name of fs.readdirSync(src)) {
  let text = fs.readFileSync(path.join(src, name), "utf8");
  if (name.endsWith(".html")) {
    text = text.replace("{{BUILD}}", `built ${new Date().toISOString()} from ${commit}`).replace("{{ENV}}", env);
  }
  fs.writeFileSync(path.join(dist, name), text);
}
console.log(`built ${fs.readdirSync(dist).length} files into dist/`);
