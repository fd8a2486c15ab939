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
            [
                "created",
                "unchanged",
                "updated",
                "kept",
                "merged",
                "conflict",
                "overwritten",
            ]
            .contains(&status)
            .then(|| (status.to_string(), w.next().unwrap_or_default().to_string()))
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

fn status_of(out: &Out, path: &str) -> String {
    statuses(out)
        .into_iter()
        .find(|(_, p)| p == path)
        .map(|(s, _)| s)
        .unwrap_or_else(|| panic!("no status for {path}: {}", out.stdout))
}

const PIN: &str = "my-org/nubes@0123456789abcdef0123456789abcdef01234567";

/// Re-init with other choices: files the user did not touch are updated, edits are kept
/// (init's version unchanged) or merged three-way with init's change (from the version
/// recorded in nubes-init.lock), and changing only the action pin changes only the lines
/// that carry it.
/// A project initialised before nubes kept `nubes-init.lock`: the choices recorded in
/// nubes.toml stand in for the missing record, so untouched files update and an edit
/// merges, instead of every differing file becoming a conflict.
#[test]
fn reinit_without_a_lock_file_uses_the_choices_nubes_toml_records() {
    let p = repo(&[("requirements.txt", "flask\n")]);
    p.run(&["init"]).ok();
    std::fs::remove_file(p.path().join("nubes-init.lock")).unwrap();
    let main = format!(
        "# owned by the payments team\n{}",
        read(&p, "terraform/main.tf")
    );
    std::fs::write(p.path().join("terraform/main.tf"), &main).unwrap();
    let outputs = read(&p, "terraform/outputs.tf");

    let out = p.run(&["init", "--database", "postgresql"]).ok();
    assert!(
        out.stderr.contains(
            "no nubes-init.lock: the files init generates for the choices recorded in nubes.toml"
        ),
        "{}",
        out.stderr
    );
    assert_eq!(
        status_of(&out, "terraform/main.tf"),
        "merged",
        "{}",
        out.stdout
    );
    assert_eq!(status_of(&out, "nubes.toml"), "updated", "{}", out.stdout);
    assert_eq!(status_of(&out, "terraform/outputs.tf"), "unchanged");
    assert!(
        statuses(&out).iter().all(|(s, _)| s != "conflict"),
        "{}",
        out.stdout
    );
    let merged = read(&p, "terraform/main.tf");
    assert!(
        merged.starts_with("# owned by the payments team\n"),
        "{merged}"
    );
    assert!(merged.contains("module \"database\""), "{merged}");
    assert_eq!(read(&p, "terraform/outputs.tf"), outputs);
    assert!(p.path().join("nubes-init.lock").exists());
    assert!(!p.path().join("terraform/main.tf.nubes-new").exists());

    // Without a recorded choice line there is nothing to stand in: a differing file is
    // a conflict, written beside it, never overwritten.
    let p = repo(&[("requirements.txt", "flask\n")]);
    p.run(&["init"]).ok();
    std::fs::remove_file(p.path().join("nubes-init.lock")).unwrap();
    let toml: String = read(&p, "nubes.toml")
        .lines()
        .filter(|l| !l.starts_with("# nubes init: "))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(p.path().join("nubes.toml"), &toml).unwrap();
    std::fs::write(p.path().join("terraform/main.tf"), "# mine\n").unwrap();
    let out = p.run(&["init", "--runtime", "python"]).code(1);
    assert_eq!(
        status_of(&out, "terraform/main.tf"),
        "conflict",
        "{}",
        out.stdout
    );
    assert_eq!(read(&p, "terraform/main.tf"), "# mine\n");
    assert!(p.path().join("terraform/main.tf.nubes-new").exists());
}

#[test]
fn reinit_updates_untouched_files_and_merges_edits() {
    let p = repo(&[("requirements.txt", "flask\n")]);
    p.run(&["init"]).ok();
    assert!(p.path().join("nubes-init.lock").exists());
    let wf_path = ".github/workflows/nubes.yml";
    // The user edits the workflow (a line of their own) and main.tf (a note on top).
    let wf = read(&p, wf_path).replacen("jobs:\n", "# our team's note\njobs:\n", 1);
    std::fs::write(p.path().join(wf_path), &wf).unwrap();
    let main = format!(
        "# owned by the payments team\n{}",
        read(&p, "terraform/main.tf")
    );
    std::fs::write(p.path().join("terraform/main.tf"), &main).unwrap();
    let outputs = read(&p, "terraform/outputs.tf");

    // Only the action pin changes: the workflow gets exactly that change, with the
    // user's line kept; main.tf is kept as edited; nothing needs --force.
    let out = p.run(&["init", "--action", PIN]).ok();
    assert_eq!(status_of(&out, wf_path), "merged", "{}", out.stdout);
    assert_eq!(
        status_of(&out, "terraform/main.tf"),
        "kept",
        "{}",
        out.stdout
    );
    assert_eq!(status_of(&out, "terraform/outputs.tf"), "unchanged");
    let after = read(&p, wf_path);
    let placeholder = "your-org/nubes@0000000000000000000000000000000000000000";
    let changed: Vec<(&str, &str)> = wf
        .lines()
        .zip(after.lines())
        .filter(|(a, b)| a != b)
        .collect();
    assert_eq!(wf.lines().count(), after.lines().count(), "{after}");
    assert!(!changed.is_empty());
    for (before, now) in changed {
        assert!(before.contains(placeholder), "{before} -> {now}");
        assert!(now.contains(PIN) && !now.contains(placeholder), "{now}");
    }
    assert!(after.contains("# our team's note"), "{after}");
    assert_eq!(read(&p, "terraform/main.tf"), main);

    // A database changes main.tf and nubes.toml: the untouched nubes.toml is updated,
    // the edited main.tf merged (the note stays, the database module arrives).
    let toml = read(&p, "nubes.toml");
    let out = p.run(&["init", "--database", "postgresql"]).ok();
    assert_eq!(
        status_of(&out, "terraform/main.tf"),
        "merged",
        "{}",
        out.stdout
    );
    assert_eq!(status_of(&out, "nubes.toml"), "updated", "{}", out.stdout);
    assert_eq!(status_of(&out, "terraform/outputs.tf"), "unchanged");
    assert_eq!(
        status_of(&out, "terraform/modules/postgresql/main.tf"),
        "created"
    );
    let merged = read(&p, "terraform/main.tf");
    assert!(
        merged.starts_with("# owned by the payments team\n"),
        "{merged}"
    );
    assert!(merged.contains("module \"database\""), "{merged}");
    assert_ne!(read(&p, "nubes.toml"), toml);
    assert_eq!(read(&p, "terraform/outputs.tf"), outputs);
    // The merge is the recorded base from now on: a third run changes nothing.
    let out = p.run(&["init"]).ok();
    assert!(
        statuses(&out)
            .iter()
            .all(|(s, _)| s == "unchanged" || s == "kept"),
        "{}",
        out.stdout
    );
    p.run(&["init", "--check"]).ok();
}

/// An edit that overlaps init's change is never overwritten: init's version goes beside
/// it as `.nubes-new`, the diff is shown, the rest is written, exit 1; the file stays a
/// conflict while the `.nubes-new` is there; `--force` takes init's version and keeps
/// the user's as `.nubes-backup`.
#[test]
fn an_overlapping_edit_is_a_conflict_with_the_new_version_beside_it() {
    let p = repo(&[("requirements.txt", "flask\n")]);
    p.run(&["init"]).ok();
    let wf_path = ".github/workflows/nubes.yml";
    let placeholder = "your-org/nubes@0000000000000000000000000000000000000000";
    // The user pinned the action by hand, on the very lines init would change.
    let mine = read(&p, wf_path).replace(placeholder, "other-org/nubes@v1");
    std::fs::write(p.path().join(wf_path), &mine).unwrap();
    std::fs::remove_file(p.path().join("terraform/outputs.tf")).unwrap();

    let out = p.run(&["init", "--action", PIN]).code(1);
    assert_eq!(status_of(&out, wf_path), "conflict", "{}", out.stdout);
    assert_eq!(status_of(&out, "terraform/outputs.tf"), "created");
    assert!(
        out.stdout
            .contains(&format!("--- {wf_path}\n+++ {wf_path}.nubes-new"))
            && out.stdout.contains("-        uses: other-org/nubes@v1")
            && out.stdout.contains(&format!("+        uses: {PIN}")),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains(wf_path) && out.stderr.contains("--force"),
        "{}",
        out.stderr
    );
    assert_eq!(read(&p, wf_path), mine);
    let beside = read(&p, &format!("{wf_path}.nubes-new"));
    assert!(beside.contains(PIN), "{beside}");
    assert!(p.path().join("terraform/outputs.tf").exists());

    // Still pending: the file is left alone while its .nubes-new exists.
    let out = p.run(&["init"]).code(1);
    assert_eq!(status_of(&out, wf_path), "conflict", "{}", out.stdout);
    let out = p.run(&["init", "--check"]).code(4);
    assert!(
        out.stdout.contains(&format!("conflict     {wf_path}")),
        "{}",
        out.stdout
    );

    // --force: init's version, the user's kept byte for byte, the .nubes-new gone.
    let out = p.run(&["init", "--force"]).ok();
    assert_eq!(status_of(&out, wf_path), "overwritten", "{}", out.stdout);
    assert_eq!(read(&p, &format!("{wf_path}.nubes-backup")), mine);
    assert_eq!(read(&p, wf_path), beside);
    assert!(!p.path().join(format!("{wf_path}.nubes-new")).exists());
    // A second forced overwrite never replaces the first backup.
    // (A lock file nubes cannot read vouches for nothing: the edit is a conflict.)
    std::fs::write(p.path().join(wf_path), "# second edit\n").unwrap();
    std::fs::write(p.path().join("nubes-init.lock"), "not a manifest\n").unwrap();
    p.run(&["init", "--force"]).ok();
    assert_eq!(read(&p, &format!("{wf_path}.nubes-backup")), mine);
    assert_eq!(
        read(&p, &format!("{wf_path}.nubes-backup-2")),
        "# second edit\n"
    );
}

/// Resolving by hand: merge, delete the .nubes-new, rerun: the file is kept as merged.
#[test]
fn a_conflict_resolved_by_hand_is_kept() {
    let p = repo(&[("requirements.txt", "flask\n")]);
    p.run(&["init"]).ok();
    let wf_path = ".github/workflows/nubes.yml";
    let placeholder = "your-org/nubes@0000000000000000000000000000000000000000";
    let mine = read(&p, wf_path).replace(placeholder, "other-org/nubes@v1");
    std::fs::write(p.path().join(wf_path), &mine).unwrap();
    p.run(&["init", "--action", PIN]).code(1);
    let resolved = format!(
        "# pinned by hand\n{}",
        read(&p, &format!("{wf_path}.nubes-new"))
    );
    std::fs::write(p.path().join(wf_path), &resolved).unwrap();
    std::fs::remove_file(p.path().join(format!("{wf_path}.nubes-new"))).unwrap();
    let out = p.run(&["init"]).ok();
    assert_eq!(status_of(&out, wf_path), "kept", "{}", out.stdout);
    assert_eq!(read(&p, wf_path), resolved);
}

/// Files init did not record (no nubes-init.lock) are the user's: each one that differs
/// is a conflict with init's version beside it; the rest is written.
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
    let main = read(&p, "terraform/main.tf");
    let out = p.run(&["init"]).code(1);
    assert!(
        out.stderr.contains("nubes.toml") && out.stderr.contains("terraform/main.tf"),
        "{}",
        out.stderr
    );
    assert_eq!(read(&p, "nubes.toml"), before);
    assert_eq!(read(&p, "terraform/main.tf"), main);
    assert!(p.path().join("nubes.toml.nubes-new").exists());
    assert!(p.path().join("terraform/main.tf.nubes-new").exists());
    assert!(p.path().join(".github/workflows/nubes.yml").exists());
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
