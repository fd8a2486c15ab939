//! Build and deploy stages of `nubes up`: concurrency with the infrastructure, the
//! `command` target, the health check, and a clear failure at each stage.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use crate::support::{Azurite, Project};

/// Terraform that records when its apply ran, and takes `sleep` seconds doing it.
fn timed_stack(sleep: u32, url: &str) -> String {
    format!(
        r#"
terraform {{
  backend "azurerm" {{}}
}}
variable "environment" {{
  type = string
}}
resource "terraform_data" "slow" {{
  provisioner "local-exec" {{
    command = "date +%s.%N > ${{path.root}}/../../../apply-start; sleep {sleep}; date +%s.%N > ${{path.root}}/../../../apply-end"
  }}
}}
output "application_url" {{
  value = "{url}"
}}
output "weird" {{
  value = "$(touch pwned-by-output); echo `id`"
}}
"#
    )
}

fn project(az: &Azurite, toml: &str, stack: &str) -> Project {
    let p = Project::on(az, toml);
    std::fs::write(p.path().join("terraform/main.tf"), stack).unwrap();
    p
}

fn read_f64(p: &Project, name: &str) -> f64 {
    std::fs::read_to_string(p.path().join(name))
        .unwrap_or_else(|_| panic!("{name} missing"))
        .trim()
        .parse()
        .unwrap()
}

fn write_script(p: &Project, name: &str, body: &str) {
    let path = p.path().join(name);
    std::fs::write(&path, format!("#!/bin/sh\nset -e\n{body}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A tiny HTTP server answering every request with `status` (bounded: it stops after
/// `max` requests or when the test ends).
pub(crate) fn http_server(status: u16, body: &'static str, max: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(max) {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 2048];
            let _ = s.read(&mut buf);
            let reason = if status == 200 {
                "OK"
            } else {
                "Service Unavailable"
            };
            let _ = write!(
                s,
                "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{addr}")
}

#[test]
fn build_runs_alongside_the_apply_then_the_command_target_gets_outputs_in_its_environment() {
    let az = Azurite::https();
    let url = http_server(200, "ok", 50);
    let p = project(
        &az,
        "[build]\ncommand = \"date +%s.%N > build-start; sleep 3; mkdir -p out; echo built > out/app.txt; date +%s.%N > build-end\"\nartifact = \"out\"\n\
         [deploy]\ntarget = \"command\"\ncommand = [\"./deploy.sh\", \"--flag with space\"]\nhealth_path = \"/healthz\"\n",
        &timed_stack(3, &url),
    );
    write_script(
        &p,
        "deploy.sh",
        "env | grep '^NUBES_' | sort > deploy-env.txt\necho \"args: $1\" >> deploy-env.txt\necho deploying $NUBES_ARTIFACT",
    );
    let out = p.run(&["up", "alice"]).ok();
    assert!(
        out.stderr.contains("[build]") || out.stdout.contains("built"),
        "{}",
        out.all()
    );
    assert!(
        out.stdout.contains("deployed to command") && out.stdout.contains("healthy"),
        "{}",
        out.stdout
    );

    // The two stages overlapped: each started before the other ended.
    let (bs, be) = (read_f64(&p, "build-start"), read_f64(&p, "build-end"));
    let (as_, ae) = (read_f64(&p, "apply-start"), read_f64(&p, "apply-end"));
    assert!(
        bs < ae && as_ < be,
        "build {bs}..{be} and apply {as_}..{ae} did not overlap"
    );

    let env = std::fs::read_to_string(p.path().join("deploy-env.txt")).unwrap();
    assert!(env.contains("NUBES_ENV=alice"), "{env}");
    assert!(
        env.contains(&format!("NUBES_OUTPUT_APPLICATION_URL={url}")),
        "{env}"
    );
    assert!(
        env.contains("NUBES_ARTIFACT=") && env.contains("/out"),
        "{env}"
    );
    assert!(
        env.contains("NUBES_OUTPUT_WEIRD=$(touch pwned-by-output); echo `id`"),
        "outputs are passed verbatim: {env}"
    );
    assert!(env.contains("args: --flag with space"), "{env}");
    assert!(
        !p.path().join("pwned-by-output").exists(),
        "an output was executed by a shell"
    );
    assert!(
        !env.contains("NUBES_STORAGE_TOKEN"),
        "secrets withheld from the deploy command"
    );
}

#[test]
fn after_infra_builds_with_the_outputs() {
    let az = Azurite::https();
    let url = http_server(200, "ok", 50);
    let p = project(
        &az,
        "[build]\ncommand = \"mkdir -p out; echo $NUBES_OUTPUT_APPLICATION_URL > out/url.txt; date +%s.%N > build-start\"\nartifact = \"out\"\nafter_infra = true\n",
        &timed_stack(1, &url),
    );
    p.run(&["up", "alice"]).ok();
    assert_eq!(
        std::fs::read_to_string(p.path().join("out/url.txt"))
            .unwrap()
            .trim(),
        url
    );
    assert!(read_f64(&p, "build-start") > read_f64(&p, "apply-end"));
}

#[test]
fn a_failed_build_stops_the_pipeline_with_its_tail_and_the_stage() {
    let az = Azurite::https();
    let mut p = project(
        &az,
        "[build]\ncommand = \"echo compiling; echo 'error: missing semicolon' >&2; exit 7\"\nartifact = \"out\"\n[deploy]\ntarget = \"command\"\ncommand = [\"./deploy.sh\"]\n",
        &timed_stack(0, "http://127.0.0.1:9"),
    );
    write_script(&p, "deploy.sh", "touch deployed");
    let summary = p.path().join("summary.md");
    p.set_env("GITHUB_STEP_SUMMARY", summary.to_str().unwrap());
    let out = p.run(&["up", "alice"]).code(1);
    assert!(
        out.stderr.contains("stage build")
            && out.stderr.contains("exit code 7")
            && out.stderr.contains("missing semicolon"),
        "{}",
        out.stderr
    );
    assert!(
        !p.path().join("deployed").exists(),
        "nothing deployed after a failed build"
    );
    let summary = std::fs::read_to_string(summary).unwrap();
    assert!(
        summary.contains("failed") && summary.contains("stage build"),
        "{summary}"
    );

    let p = project(
        &az,
        "[build]\ncommand = \"no-such-compiler --all\"\nartifact = \"out\"\n",
        &timed_stack(0, "http://127.0.0.1:9"),
    );
    let out = p.run(&["up", "bob"]).code(1);
    assert!(
        out.stderr.contains("not installed or not on PATH"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_missing_artifact_is_a_configuration_error() {
    let az = Azurite::https();
    let p = project(
        &az,
        "[build]\ncommand = \"true\"\nartifact = \"nowhere\"\n",
        &timed_stack(0, "http://127.0.0.1:9"),
    );
    let out = p.run(&["up", "alice"]).code(2);
    assert!(
        out.stderr.contains("stage build")
            && out.stderr.contains("nowhere")
            && out.stderr.contains("[build] artifact"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_failing_health_check_reports_the_last_status_and_body() {
    let az = Azurite::https();
    let url = http_server(503, "warming up, try later", 100);
    let mut p = project(
        &az,
        "[build]\ncommand = \"mkdir -p out\"\nartifact = \"out\"\n[deploy]\ntarget = \"command\"\ncommand = [\"true\"]\nhealth_timeout = \"3s\"\n",
        &timed_stack(0, &url),
    );
    let summary = p.path().join("summary.md");
    p.set_env("GITHUB_STEP_SUMMARY", summary.to_str().unwrap());
    let started = std::time::Instant::now();
    let out = p.run(&["up", "alice"]).code(1);
    assert!(started.elapsed() < Duration::from_secs(60));
    assert!(
        out.stderr.contains("stage health check")
            && out.stderr.contains("503")
            && out.stderr.contains("warming up"),
        "{}",
        out.stderr
    );
    assert!(
        std::fs::read_to_string(summary)
            .unwrap()
            .contains("stage health check")
    );
}

/// Terraform whose outputs point nubes at an app behind the fake Kudu.
fn app_stack(outputs: &[(&str, &str)]) -> String {
    let mut stack = "terraform {\n  backend \"azurerm\" {}\n}\nvariable \"environment\" {\n  type = string\n}\n".to_string();
    for (name, value) in outputs {
        stack.push_str(&format!(
            "output \"{name}\" {{\n  value = \"{value}\"\n}}\n"
        ));
    }
    stack
}

#[test]
fn app_service_target_zip_deploys_through_kudu_and_a_failed_deployment_names_the_stage() {
    use crate::kudu::fake::{self, FakeKudu, Script};
    let az = Azurite::https();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let kudu = runtime.block_on(FakeKudu::start(Script::Succeed));
    let stack = app_stack(&[
        ("scm_url", &kudu.scm_url),
        ("application_url", &kudu.site_url),
    ]);
    let mut p = project(
        &az,
        "[build]\ncommand = \"mkdir -p out/lib && echo app > out/app.py && echo x > out/lib/a.txt && echo debug > out/debug.log\"\nartifact = \"out\"\n",
        &stack,
    );
    std::fs::create_dir_all(p.path().join("out")).unwrap();

    // A token for Resource Manager's audience is refused, and nubes says which audience
    // Kudu wants and where the token came from.
    let arm_token = fake::token(fake::ARM_AUDIENCE);
    p.set_env("NUBES_KUDU_TOKEN", &arm_token);
    let out = p.run(&["up", "alice"]).code(2);
    assert!(
        out.stderr.contains("bearer token (NUBES_KUDU_TOKEN)")
            && out
                .stderr
                .contains("aud) is `https://management.core.windows.net/`")
            && out.stderr.contains("https://appservice.azure.com"),
        "{}",
        out.stderr
    );
    assert!(!out.all().contains(&arm_token));
    assert!(kudu.deployments().is_empty());

    let token = fake::token(fake::APP_SERVICE_AUDIENCE);
    p.set_env("NUBES_KUDU_TOKEN", &token);
    let out = p.run(&["up", "alice"]).ok();
    assert!(
        out.stdout.contains("deployed to app-service")
            && out.stdout.contains(fake::DEPLOYMENT_ID)
            && out.stdout.contains("zip deploy"),
        "{}",
        out.all()
    );
    let uploads = kudu.uploads();
    let files = uploads.last().unwrap().as_ref().unwrap();
    assert!(
        files.iter().any(|f| f == "app.py") && files.iter().any(|f| f == "lib/a.txt"),
        "{files:?}"
    );
    assert!(!out.all().contains(&token));

    let failing = runtime.block_on(FakeKudu::start(Script::Fail {
        lines: vec!["Running oryx build".into()],
        details: vec!["npm ERR! missing script: start".into()],
    }));
    let stack = stack.replace(&kudu.scm_url, &failing.scm_url);
    std::fs::write(p.path().join("terraform/main.tf"), stack).unwrap();
    let summary = p.path().join("summary.md");
    p.set_env("GITHUB_STEP_SUMMARY", summary.to_str().unwrap());
    let out = p.run(&["up", "alice"]).code(1);
    assert!(
        out.stderr.contains("stage deploy") && out.stderr.contains("missing script: start"),
        "{}",
        out.stderr
    );
    assert!(
        std::fs::read_to_string(summary)
            .unwrap()
            .contains("stage deploy")
    );
}

#[test]
fn a_spring_boot_maven_project_ships_its_runnable_jar_through_onedeploy_and_starts() {
    use crate::kudu::fake::{self, FakeKudu, Script, Site, Stack};
    let az = Azurite::https();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let kudu = runtime.block_on(FakeKudu::start_with(
        Script::Succeed,
        Site {
            stack: Stack::JavaSe,
            ..Site::default()
        },
    ));
    let stack = app_stack(&[
        ("scm_url", &kudu.scm_url),
        ("application_url", &kudu.site_url),
    ]);
    let mut p = project(&az, "", &stack);
    // A Spring Boot project: pom.xml and the Maven wrapper, whose "build" leaves what
    // spring-boot-maven-plugin leaves in target/ (no JDK or Maven needed here).
    std::fs::write(
        p.path().join("pom.xml"),
        "<project><groupId>com.example</groupId><artifactId>demo</artifactId>\
         <version>0.0.1-SNAPSHOT</version><packaging>jar</packaging></project>\n",
    )
    .unwrap();
    let jar = crate::kudu::spring_boot_jar();
    std::fs::create_dir_all(p.path().join("prebuilt")).unwrap();
    std::fs::write(p.path().join("prebuilt/demo.jar"), &jar).unwrap();
    write_script(
        &p,
        "mvnw",
        "mkdir -p target/classes target/maven-archiver\n\
         cp prebuilt/demo.jar target/demo-0.0.1-SNAPSHOT.jar\n\
         cp prebuilt/demo.jar target/demo-0.0.1-SNAPSHOT.jar.original\n\
         echo version=0.0.1-SNAPSHOT > target/maven-archiver/pom.properties",
    );
    p.set_env("NUBES_KUDU_TOKEN", &fake::token(fake::APP_SERVICE_AUDIENCE));
    let out = p.run(&["up", "alice"]).ok();
    assert!(out.stdout.contains("OneDeploy (type=jar)"), "{}", out.all());
    let digest = {
        use sha2::Digest as _;
        format!("{:x}", sha2::Sha256::digest(&jar))
    };
    assert!(out.stdout.contains(&digest), "{}", out.stdout);
    let posts = kudu.posts();
    assert_eq!(posts.len(), 1);
    assert_eq!(
        posts[0].target,
        "/api/publish?type=jar&async=true&restart=true&clean=false"
    );
    assert_eq!(kudu.file("app.jar"), Some(jar));
    assert!(kudu.healthy(), "{:?}", kudu.wwwroot());

    // Two runnable archives: nubes does not guess.
    write_script(
        &p,
        "mvnw",
        "mkdir -p target\ncp prebuilt/demo.jar target/demo-0.0.1-SNAPSHOT.jar\n\
         cp prebuilt/demo.jar target/demo-admin.war",
    );
    let out = p.run(&["up", "alice"]).code(2);
    assert!(
        out.stderr
            .contains("demo-0.0.1-SNAPSHOT.jar, demo-admin.war")
            && out.stderr.contains("[build] artifact"),
        "{}",
        out.stderr
    );
    assert_eq!(kudu.posts().len(), 1);
}

#[test]
fn partial_success_with_complete_fails_up_with_exit_1() {
    use crate::kudu::fake::{self, FakeKudu, Script};
    let az = Azurite::https();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let kudu = runtime.block_on(FakeKudu::start(Script::EndsWith(6)));
    let stack = app_stack(&[
        ("scm_url", &kudu.scm_url),
        ("application_url", &kudu.site_url),
    ]);
    let mut p = project(
        &az,
        "[build]\ncommand = \"mkdir -p out && echo app > out/app.js\"\nartifact = \"out\"\n",
        &stack,
    );
    p.set_env("NUBES_KUDU_TOKEN", &fake::token(fake::APP_SERVICE_AUDIENCE));
    let out = p.run(&["up", "alice"]).code(1);
    assert!(
        out.stderr
            .contains("only partially succeeded (status 6 (PartialSuccess))")
            && out.stderr.contains("stage deploy"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_flex_consumption_function_app_gets_onedeploy_from_one_read_of_the_site() {
    use crate::arm::fake::{FakeArm, SUBSCRIPTION, group_in, web_app};
    use crate::kudu::fake::{self, FakeKudu, Script, Site};
    let az = Azurite::https();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let kudu = runtime.block_on(FakeKudu::start_with(
        Script::Succeed,
        Site {
            flex: true,
            ..Site::default()
        },
    ));
    let arm_token = "arm-token-for-the-flex-test";
    let arm = runtime.block_on(FakeArm::start(
        arm_token,
        10,
        vec![group_in("rg-demo-alice", "eastus", &[])],
    ));
    arm.add_site(web_app(
        "rg-demo-alice",
        "func-demo-alice",
        "functionapp,linux",
        "FlexConsumption",
    ));
    let stack = app_stack(&[
        ("scm_url", &kudu.scm_url),
        ("application_url", &kudu.site_url),
        ("resource_group", "rg-demo-alice"),
        ("app_name", "func-demo-alice"),
    ]);
    let mut p = project(
        &az,
        "[build]\ncommand = \"mkdir -p out && echo '{}' > out/host.json\"\nartifact = \"out\"\n\n[deploy]\ntarget = \"functions\"\n",
        &stack,
    );
    p.set_env("NUBES_KUDU_TOKEN", &fake::token(fake::APP_SERVICE_AUDIENCE));
    p.set_env("NUBES_ARM_ENDPOINT", &arm.endpoint);
    p.set_env("NUBES_ARM_TOKEN", arm_token);
    p.set_env("ARM_SUBSCRIPTION_ID", SUBSCRIPTION);
    let out = p.run(&["up", "alice"]).ok();
    assert!(
        out.stdout.contains("OneDeploy (Flex Consumption)"),
        "{}",
        out.all()
    );
    let posts = kudu.posts();
    assert_eq!(posts.len(), 1);
    assert_eq!(
        posts[0].target,
        "/api/publish?RemoteBuild=false&Deployer=nubes"
    );
    assert_eq!(arm.requests_to("GET", "/sites/func-demo-alice").len(), 1);
    assert_eq!(kudu.wwwroot(), ["host.json"]);
}

#[test]
fn a_linux_consumption_function_app_is_refused_before_any_upload() {
    use crate::kudu::fake::{self, FakeKudu, Script};
    let az = Azurite::https();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let kudu = runtime.block_on(FakeKudu::start(Script::Succeed));
    let stack = app_stack(&[
        ("scm_url", &kudu.scm_url),
        ("app_sku", "Y1"),
        ("app_kind", "functionapp,linux"),
    ]);
    let mut p = project(
        &az,
        "[build]\ncommand = \"mkdir -p out && echo '{}' > out/host.json\"\nartifact = \"out\"\n\n[deploy]\ntarget = \"functions\"\n",
        &stack,
    );
    p.set_env("NUBES_KUDU_TOKEN", &fake::token(fake::APP_SERVICE_AUDIENCE));
    let out = p.run(&["up", "alice"]).code(2);
    assert!(
        out.stderr.contains("Linux Consumption plan")
            && out.stderr.contains("WEBSITE_RUN_FROM_PACKAGE")
            && out.stderr.contains("Flex Consumption"),
        "{}",
        out.stderr
    );
    assert!(kudu.requests().is_empty());
}
