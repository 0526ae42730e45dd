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
command = ["bash", "-c", "echo ready; while true; do if read -t 1 line; then echo \"got:$line\"; fi; done"]
"#;
    std::fs::write(r.path().join("switchyard.toml"), config).unwrap();
    std::fs::write(
        r.path().join("manifest.json"),
        r#"{"project":"e2e","workdir":".sy","phases":[{"name":"p","tasks":[
            {"id":"e1","title":"Echo things","files":["a"]},
            {"id":"e2","title":"Echo more","files":["b"]}]}]}"#,
    )
    .unwrap();
    let _server = common::StopOnDrop(r.path().join("manifest.json"));
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

    // q asks: detach (the default) or stop the run; s stops it and restores the terminal.
    app.send(b"q");
    app.wait_for("s: stop the run", 5);
    app.send(b"s");
    let code = app.wait_exit(15);
    assert!(!app.alternate(), "the terminal is back on the main screen");
    assert_eq!(code, 1, "tasks were left unfinished");
    let m = std::fs::read_to_string(r.path().join("manifest.json")).unwrap();
    assert!(
        m.contains("\"status\": \"running\""),
        "quit leaves tasks resumable: {m}"
    );
}

fn project(config: &str, tasks: &str) -> tempfile::TempDir {
    let r = repo();
    std::fs::write(r.path().join("switchyard.toml"), config).unwrap();
    std::fs::write(
        r.path().join("manifest.json"),
        format!(
            r#"{{"project":"e2e","workdir":".sy","phases":[{{"name":"p","tasks":[{tasks}]}}]}}"#
        ),
    )
    .unwrap();
    r
}

#[test]
fn a_child_tui_that_asks_for_the_cursor_position_gets_an_answer() {
    // The child moves the cursor, asks where it is (DSR 6), and prints the answer it read.
    let config = r#"
default_agent = "asker"
[agents.asker]
command = ["bash", "-c", "stty -echo; printf '\\033[5;10H\\033[6n'; IFS= read -r -s -d R pos; printf '\\r\\nreport=%s\\r\\n' \"${pos#*[}\"; sleep 30"]
"#;
    let r = project(
        config,
        r#"{"id":"q1","title":"Query the cursor","files":["a"]}"#,
    );
    let _server = common::StopOnDrop(r.path().join("manifest.json"));
    let mut app = PtyApp::spawn(&["run", "manifest.json"], r.path(), 30, 110);
    let s = app.wait_for("report=", 20);
    assert!(
        s.contains("report=5;10"),
        "the child read its cursor position: {s}"
    );
    app.send(b"q");
    app.send(b"s");
    app.wait_exit(15);
}

#[test]
fn a_task_needing_attention_is_highlighted_and_one_key_away() {
    let config = r#"
default_agent = "echo"
[agents.echo]
command = ["sh", "-c", "echo ready; sleep 60"]
[agents.danger]
command = ["sh", "-c", "echo working; printf 'Delete the old release branch? (y/n) '; read a; echo answered $a; sleep 60"]
"#;
    let r = project(
        config,
        r#"{"id":"calm","title":"Quiet work","files":["a"]},
           {"id":"other","title":"More quiet work","files":["b"]},
           {"id":"risky","title":"Prune branches","files":["c"],"agent":"danger"}"#,
    );
    let _server = common::StopOnDrop(r.path().join("manifest.json"));
    let mut app = PtyApp::spawn(&["run", "manifest.json"], r.path(), 34, 130);
    app.wait_for("needs_attention", 20);
    // Highlighted in the table (red row) and selected by one key.
    let s = app.screen();
    assert!(
        s.lines()
            .any(|l| l.contains(" risky ") && l.contains("▲ needs_attention")),
        "the table row says so: {s}"
    );
    assert_eq!(
        app.bg_of("risky"),
        Some(vt100::Color::Rgb(80, 0, 0)),
        "the row is highlighted"
    );
    assert!(app.screen().contains("▶ calm"), "calm is selected first");
    app.send(b"!");
    let s = app.wait_until("selection moved", 5, |s| {
        s.lines().any(|l| l.contains("▶ risky"))
    });
    assert!(s.contains("▲ risky"), "{s}");
    // Zoomed, the pane's title carries the whole reason.
    app.send(b"z");
    app.wait_for("needs_attention: prompt matches the deny-list", 5);
    app.send(b"z");
    // A person answers it: the worker goes on and the task runs again.
    app.send(b"N");
    app.wait_for("answered n", 10);
    app.wait_until("back to running", 10, |s| {
        s.lines()
            .any(|l| l.contains(" risky ") && l.contains("● running"))
    });
    app.send(b"q");
    app.send(b"s");
    app.wait_exit(15);
}

#[test]
fn scrollback_older_than_memory_is_read_and_searched_from_the_transcript() {
    // 3000 numbered lines: more than the 1000 the emulator keeps in memory (the default), fewer
    // than the 5000 a person may read.
    let config = r#"
default_agent = "printer"
[agents.printer]
command = ["bash", "-c", "for i in $(seq 1 3000); do printf 'line %d.\\n' $i; done; echo printed all; sleep 60"]
"#;
    let r = project(config, r#"{"id":"p1","title":"Print a lot","files":["a"]}"#);
    let _server = common::StopOnDrop(r.path().join("manifest.json"));
    let mut app = PtyApp::spawn(&["run", "manifest.json"], r.path(), 34, 120);
    app.wait_for("Print a lo", 20);
    // Everything printed (read on disk: the tile's crop may still show older rows).
    let transcript = r.path().join(".sy/logs/p1.log");
    common::wait_until("the worker printed all", 30, || {
        std::fs::read_to_string(&transcript).is_ok_and(|t| t.contains("printed all"))
    });
    app.send(b"z"); // the pane full size

    // PgUp reads memory; g goes past it, to the oldest line, replayed from the transcript.
    app.send(b"\x1b[5~");
    app.wait_for("/ 1000 in memory", 5);
    app.send(b"g");
    let s = app.wait_for("(from the transcript)", 10);
    let s = if s.contains("line 1.") {
        s
    } else {
        app.wait_for("line 1.", 5)
    };
    assert!(s.contains("line 2."), "the oldest lines, in order: {s}");
    app.send(b"q");
    app.wait_until("left scrollback", 5, |s| !s.contains("SCROLLBACK"));

    // A search for a line older than memory holds finds it in the transcript.
    app.send(b"/");
    app.wait_for("search scrollback", 5);
    app.send(b"line 1500.\r");
    let s = app.wait_until("the match shown", 10, |s| {
        s.contains("line 1500.") && s.contains("(from the transcript)")
    });
    assert!(!s.contains("not found"), "{s}");

    app.send(b"q");
    app.wait_until("left scrollback", 5, |s| !s.contains("SCROLLBACK"));
    app.send(b"q");
    app.wait_for("s: stop the run", 5);
    app.send(b"s");
    app.wait_exit(15);
}
