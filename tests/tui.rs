//! The control room driven through a real PTY, its screen read with vt100 as a person sees it.

mod common;

use common::{repo, PtyApp};

#[test]
fn control_room_shows_tasks_help_attach_type_detach_and_quits_cleanly() {
    let r = repo();
    // A worker that echoes what is typed into it, then waits.
    let config = r#"
default_agent = "echo"
[agents.echo]
command = ["sh", "-c", "echo ready; while read line; do echo \"got:$line\"; done"]
"#;
    std::fs::write(r.path().join("switchyard.toml"), config).unwrap();
    std::fs::write(
        r.path().join("manifest.json"),
        r#"{"project":"e2e","workdir":".sy","phases":[{"name":"p","tasks":[
            {"id":"e1","title":"Echo things","files":["a"]},
            {"id":"e2","title":"Echo more","files":["b"]}]}]}"#,
    )
    .unwrap();
    let mut app = PtyApp::spawn(&["run", "manifest.json"], r.path(), 30, 110);
    let s = app.wait_for("Echo things", 20);
    assert!(s.contains("switchyard") && s.contains("e2e"), "{s}");
    app.wait_for("ready", 20);
    assert!(
        app.alternate(),
        "the control room uses the alternate screen"
    );

    // Help lists the keys from the same table that dispatches them.
    app.send(b"?");
    let s = app.wait_for("keys — ? or Esc closes", 5);
    assert!(s.contains("retry: restart the task now"), "{s}");
    assert!(s.contains("attach to the selected worker"), "{s}");
    app.send(b"\x1b");
    app.wait_until("help closed", 5, |s| !s.contains("keys — ? or Esc closes"));

    // Attach to e1, type into it, see the answer, detach.
    app.send(b"\r");
    let s = app.wait_for("ATTACHED", 5);
    assert!(s.contains("Ctrl-] detaches"), "{s}");
    app.send(b"hello switchyard\r");
    app.wait_for("got:hello switchyard", 5);
    app.send(b"\x1d"); // Ctrl-]
    let s = app.wait_until("detached", 5, |s| !s.contains("ATTACHED"));
    assert!(s.contains("Echo more"), "back in the control room: {s}");
    // The typed text is still on the worker's pane after detaching.
    assert!(s.contains("got:hello switchyard"), "{s}");

    // j selects e2 and n opens the editable nudge line.
    app.send(b"j");
    app.send(b"n");
    app.wait_for("nudge text (Enter sends, Esc cancels)", 5);
    app.send(&[0x15]); // Ctrl-U clears the prefilled text
    app.send(b"custom nudgeX\x7f\r");
    app.wait_for("got:custom nudge", 5);

    // q asks first while workers run; y quits and restores the terminal.
    app.send(b"q");
    app.wait_for("Quit and stop them?", 5);
    app.send(b"y");
    let code = app.wait_exit(15);
    assert!(!app.alternate(), "the terminal is back on the main screen");
    assert_eq!(code, 1, "tasks were left unfinished");
    let m = std::fs::read_to_string(r.path().join("manifest.json")).unwrap();
    assert!(
        m.contains("\"status\": \"running\""),
        "quit leaves tasks resumable: {m}"
    );
}
