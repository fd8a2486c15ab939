//! `nubes init` as a user runs it (the real binary, no terminal, so never a prompt):
//! the bundled example becomes a project nubes's own pipeline accepts; a second run
//! changes nothing; a differing file stops everything unless `--force`; invalid
//! combinations are refused with the reason; `--check` writes nothing.

use std::path::Path;

use crate::support::{Out, Project};

fn example() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/static-site"))
}

/// An empty folder (no nubes.toml, no terraform/) with the given files.
fn repo(files: &[(&str, &str)]) -> Project {
    let p = Project::new("", &[]);
    std::fs::remove_file(p.path().join("nubes.toml")).unwrap();
    for (name, text) in files {
        let path = p.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    p
}

fn read(p: &Project, rel: &str) -> String {
    std::fs::read_to_string(p.path().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn statuses(out: &Out) -> Vec<(String, String)> {
    out.stdout
        .lines()
        .take_while(|l| !l.is_empty())
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let status = w.next()?;
            ["created", "unchanged", "overwritten"]
                .contains(&status)
                .then(|| {
                    (
                        status.to_string(),
                        w.next_back().unwrap_or_default().to_string(),
                    )
                })
        })
        .collect()
}

const SPRING: &str = "<project><parent><groupId>org.springframework.boot</groupId>\
                      <artifactId>spring-boot-starter-parent</artifactId></parent></project>";

#[test]
fn init_on_the_static_site_example_gives_a_project_nubes_runs() {
    // The example's application, without its hand-written nubes.toml and terraform/.
    let mut files = vec![];
    for name in [
        "package.json",
        "package-lock.json",
        "build.js",
        "src/index.html",
        "src/app.js",
        "src/style.css",
    ] {
        files.push((name, std::fs::read_to_string(example().join(name)).unwrap()));
    }
    let files: Vec<(&str, &str)> = files.iter().map(|(n, t)| (*n, t.as_str())).collect();
    let p = repo(&files);
    let out = p.run(&["init", "--name", "demo"]).ok();
    assert!(out.stderr.contains("found package.json"), "{}", out.stderr);
    let toml = read(&p, "nubes.toml");
    assert!(
        toml.contains("--target static-site --runtime node"),
        "{toml}"
    );
    assert!(toml.contains("target = \"static-site\""), "{toml}");
    assert!(
        out.stdout
            .contains("created      terraform/modules/static-site/main.tf"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("nubes bootstrap"), "{}", out.stdout);
    assert!(
        out.stdout.contains("git switch -c env-dev"),
        "{}",
        out.stdout
    );

    // nubes's own pipeline front half: config, render into the working copy, the
    // variables it passes, and Terraform started there (`version` needs no providers,
    // which cannot be downloaded here).
    let out = p.run(&["tf", "dev", "--", "version"]).ok();
    assert!(out.stdout.contains("Terraform v"), "{}", out.all());
    assert!(!out.stderr.contains("not declared"), "{}", out.stderr);
    let vars: serde_json::Value =
        serde_json::from_str(&read(&p, ".nubes/work/dev/nubes.auto.tfvars.json")).unwrap();
    assert_eq!(vars["environment"], "dev");
    assert_eq!(vars["application_name"], "demo");
    assert_eq!(vars["location"], "eastus");
    assert_eq!(vars["tags"]["nubes-env"], "dev");
    assert_eq!(vars["tags"]["nubes-branch"], "env-dev");
    let out = p
        .run(&["tf", "dev", "--", "fmt", "-check", "-recursive"])
        .ok();
    assert!(out.stdout.trim().is_empty(), "{}", out.all());
}

#[test]
fn running_init_twice_changes_nothing_and_says_so() {
    let p = repo(&[("pom.xml", SPRING)]);
    let args = [
        "init",
        "--database",
        "postgresql",
        "--addons",
        "key-vault,redis",
        "--state-account",
        "stdemo",
    ];
    let first = p.run(&args).ok();
    assert!(
        statuses(&first).iter().all(|(s, _)| s == "created"),
        "{}",
        first.stdout
    );
    let main = read(&p, "terraform/main.tf");
    assert!(
        main.contains("SPRING_DATASOURCE_URL") && main.contains("module.key_vault.secret_ids"),
        "{main}"
    );
    // Again with the same flags, then with none: the choices are read back from nubes.toml.
    for again in [&args[..], &["init"][..]] {
        let out = p.run(again).ok();
        let s = statuses(&out);
        assert_eq!(s.len(), statuses(&first).len(), "{}", out.stdout);
        assert!(s.iter().all(|(st, _)| st == "unchanged"), "{}", out.stdout);
        assert!(out.stdout.contains("nothing changed"), "{}", out.stdout);
    }
    assert_eq!(read(&p, "terraform/main.tf"), main);
    let out = p.run(&["init", "--check"]).ok();
    assert!(out.stdout.contains("up to date"), "{}", out.stdout);
}

#[test]
fn a_differing_file_is_reported_and_nothing_is_written_without_force() {
    let p = repo(&[("requirements.txt", "flask\n")]);
    p.run(&["init"]).ok();
    std::fs::write(p.path().join("terraform/main.tf"), "# mine\n").unwrap();
    std::fs::remove_file(p.path().join("terraform/outputs.tf")).unwrap();
    let out = p.run(&["init"]).code(2);
    assert!(
        out.stderr.contains("terraform/main.tf") && out.stderr.contains("--force"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("outputs.tf"), "{}", out.stderr);
    // All or nothing: the missing file was not written either.
    assert!(!p.path().join("terraform/outputs.tf").exists());
    assert_eq!(read(&p, "terraform/main.tf"), "# mine\n");
    let out = p.run(&["init", "--check"]).code(4);
    assert!(
        out.stdout.contains("differs      terraform/main.tf"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("would create terraform/outputs.tf"),
        "{}",
        out.stdout
    );
    let out = p.run(&["init", "--force"]).ok();
    assert!(
        out.stdout.contains("overwritten  terraform/main.tf"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("created      terraform/outputs.tf"),
        "{}",
        out.stdout
    );
    assert!(read(&p, "terraform/main.tf").contains("module \"app\""));
}

#[test]
fn the_example_with_its_own_files_is_a_conflict() {
    let p = repo(&[]);
    for name in [
        "package.json",
        "build.js",
        "nubes.toml",
        "terraform/main.tf",
        "src/index.html",
    ] {
        let to = p.path().join(name);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(example().join(name), to).unwrap();
    }
    let before = read(&p, "nubes.toml");
    let out = p.run(&["init"]).code(2);
    assert!(
        out.stderr.contains("nubes.toml") && out.stderr.contains("terraform/main.tf"),
        "{}",
        out.stderr
    );
    assert_eq!(read(&p, "nubes.toml"), before);
    assert!(!p.path().join(".github").exists());
}

#[test]
fn invalid_choices_are_refused_with_the_reason() {
    let p = repo(&[("pom.xml", SPRING)]);
    for (args, says) in [
        (
            &["init", "--target", "functions"][..],
            "does not support --runtime spring-boot",
        ),
        (
            &["init", "--runtime", "static", "--database", "mysql"][..],
            "cannot use --database mysql",
        ),
        (
            &["init", "--runtime", "docker", "--target", "app-service"][..],
            "use --target container-apps",
        ),
        (
            &["init", "--database", "oracle"][..],
            "postgresql, mysql, sql-server, cosmosdb-mongodb",
        ),
        (
            &["init", "--addons", "redis,kafka"][..],
            "application-insights, key-vault, redis, storage-blob",
        ),
        (&["init", "--name", "Pet_Clinic"][..], "lowercase letters"),
        (&["init", "--location", "East US"][..], "eastus"),
        (
            &["init", "--action", "my-org/nubes@v1"][..],
            "40-character commit SHA",
        ),
        (
            &["init", "--state-account", "st-demo"][..],
            "3 to 24 lowercase",
        ),
    ] {
        let out = p.run(args).code(2);
        assert!(out.stderr.contains(says), "{args:?}: {}", out.stderr);
    }
    assert!(!p.path().join("nubes.toml").exists());
    assert!(!p.path().join("terraform").exists());

    let empty = repo(&[("README.md", "hello\n")]);
    let out = empty.run(&["init"]).code(2);
    assert!(out.stderr.contains("--runtime"), "{}", out.stderr);
}

#[test]
fn frameworks_and_runtimes_get_their_own_settings() {
    let quarkus = repo(&[(
        "pom.xml",
        "<dependency><groupId>io.quarkus</groupId></dependency>",
    )]);
    quarkus.run(&["init", "--database", "sql-server"]).ok();
    let main = read(&quarkus, "terraform/main.tf");
    assert!(
        main.contains("QUARKUS_DATASOURCE_DB_KIND  = \"mssql\""),
        "{main}"
    );
    assert!(
        main.contains("QUARKUS_DATASOURCE_PASSWORD = \"database-password\""),
        "{main}"
    );

    let docker = repo(&[("Dockerfile", "FROM scratch\n")]);
    let out = docker.run(&["init", "--addons", "key-vault"]).ok();
    assert!(out.stderr.contains("found Dockerfile"), "{}", out.stderr);
    let toml = read(&docker, "nubes.toml");
    // nubes's own container deploy: built once, pushed, rolled out; no `az` anywhere.
    assert!(
        toml.contains("target = \"container-apps\"") && !toml.contains("command ="),
        "{toml}"
    );
    let wf = read(&docker, ".github/workflows/nubes.yml");
    assert!(
        !wf.contains("azure/login") && !wf.contains("az acr"),
        "{wf}"
    );
    let outputs = read(&docker, "terraform/outputs.tf");
    assert!(
        outputs.contains("output \"container_registry_login_server\"")
            && outputs.contains("output \"container_app_id\""),
        "{outputs}"
    );
}

#[test]
fn config_flag_names_the_file_written_and_read_back() {
    let p = repo(&[("index.html", "<h1>hi</h1>")]);
    let out = p.run(&["--config", "deploy/nubes.toml", "init"]).ok();
    assert!(
        out.stdout.contains("created      deploy/nubes.toml"),
        "{}",
        out.stdout
    );
    assert!(!p.path().join("nubes.toml").exists());
    assert!(read(&p, "deploy/nubes.toml").contains("--runtime static"));
    let out = p.run(&["--config", "deploy/nubes.toml", "init"]).ok();
    assert!(out.stdout.contains("nothing changed"), "{}", out.stdout);
}

/// On a terminal (a real pseudo-terminal from util-linux `script`) and outside CI, init
/// asks for each choice; Enter keeps the proposal, a wrong answer is asked again.
#[test]
fn on_a_terminal_init_asks_and_enter_keeps_the_proposal() {
    let script = which::which("script").expect("`script` (util-linux) gives the test a terminal");
    let p = repo(&[("pom.xml", "<project/>")]);
    let nubes = env!("CARGO_BIN_EXE_nubes");
    let mut cmd = std::process::Command::new(script);
    cmd.args(["-qec", &format!("{nubes} init"), "/dev/null"])
        .current_dir(p.path())
        .env_remove("CI")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"quarkus\n\nmysql\nredis,bogus\nredis\npremium\n")
        .unwrap();
    let out: Out = child.wait_with_output().unwrap().into();
    let out = out.ok();
    assert!(
        out.stdout.contains("runtime (spring-boot, quarkus"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("[java]"), "{}", out.stdout);
    assert!(
        out.stdout.contains("`bogus` is not known"),
        "{}",
        out.stdout
    );
    let toml = read(&p, "nubes.toml");
    assert!(
        toml.contains(
            "--target app-service --runtime quarkus --database mysql --addons redis --tier premium"
        ),
        "{toml}"
    );
}
