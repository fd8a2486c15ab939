//! The README's first command, `scripts/demo.sh`, runs clean (with this test's binary,
//! so CI needs no second, release build).

use std::process::{Command, Stdio};

#[test]
fn the_demo_runs_end_to_end() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("bash")
        .arg(format!("{root}/scripts/demo.sh"))
        .env("NUBES_BIN", env!("CARGO_BIN_EXE_nubes"))
        .env_remove("NUBES_STORAGE_TOKEN")
        .env_remove("NUBES_STATE_ACCOUNT_URL")
        .stdin(Stdio::null())
        .output()
        .expect("run the demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "demo failed:\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    for step in ["1/8", "3/8", "5/8", "6/8", "7/8", "8/8", "Done"] {
        assert!(stdout.contains(step), "step {step} missing:\n{stdout}");
    }
    assert!(
        stdout.contains("Hello from a nubes environment"),
        "the deployed page was printed:\n{stdout}"
    );
    assert!(
        stdout.contains("environment `demo`") && stdout.contains("last apply:"),
        "status shown:\n{stdout}"
    );
    assert!(stdout.contains("torn down"), "{stdout}");
}
