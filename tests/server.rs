//! The run's server and its clients, end to end: the real binary, real PTYs, real git, the real
//! socket. Control rooms are read with vt100 as a person sees them.

mod common;

use common::{alive, bin, repo, server_pid, wait_until, PtyApp, StopOnDrop};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// A worker that asks a question nothing answers automatically (it blocks reading its terminal:
/// waiting for a person), reports the answer, then echoes lines; a second that echoes lines
/// (polling with `read -t`, so it is busy, not asking); a third that commits after a while.
const CONFIG: &str = r#"
default_agent = "asker"
[agents.asker]
command = ["bash", "-c", "echo ready-$SWITCHYARD_TASK_ID; printf 'Pick a colour: '; read a; echo answered:$a; while true; do if read -t 1 line; then echo got:$line; fi; done"]
[agents.echo]
command = ["bash", "-c", "echo ready-$SWITCHYARD_TASK_ID attempt $SWITCHYARD_ATTEMPT; while true; do if read -t 1 line; then echo got:$line; fi; done"]
[agents.slowcommit]
command = ["sh", "-c", "echo working; sleep 3; echo x > done.txt; git add done.txt; git -c user.name=a -c user.email=a@a commit -qm done; echo committed"]
[heal]
stall_ms = 600000
"#;

const TASKS: &str = r#"{"project":"srv","workdir":".sy","phases":[{"name":"p","tasks":[
    {"id":"s1","title":"Ask a question","files":["a"]},
    {"id":"s2","title":"Echo along","files":["b"],"agent":"echo"},
    {"id":"s3","title":"Finish later","files":["c"],"agent":"slowcommit"}]}]}"#;

fn project() -> tempfile::TempDir {
    let r = repo();
    std::fs::write(r.path().join("switchyard.toml"), CONFIG).unwrap();
    std::fs::write(r.path().join("manifest.json"), TASKS).unwrap();
    r
}

fn sy(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(bin())
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn status_json(dir: &Path) -> Value {
    let out = sy(dir, &["status", "manifest.json", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn task<'a>(v: &'a Value, id: &str) -> &'a Value {
    v["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id)
        .unwrap()
}

fn transcript(dir: &Path, id: &str) -> String {
    std::fs::read_to_string(dir.join(format!(".sy/logs/{id}.log"))).unwrap_or_default()
}

#[test]
fn workers_outlive_the_control_room_and_clients_drive_the_one_run() {
    let r = project();
    let dir = r.path();
    let _stop = StopOnDrop(dir.join("manifest.json"));

    // The control room starts the server; D detaches and leaves the run going.
    let mut room = PtyApp::spawn(&["run", "manifest.json"], dir, 30, 110);
    room.wait_for("Ask a question", 20);
    room.wait_for("Pick a colour:", 20);
    let pid = server_pid(&dir.join(".sy")).expect("the server's lock names its pid");
    room.send(b"D");
    assert_eq!(room.wait_exit(10), 0, "detaching is not a failure");
    let s = room.screen();
    assert!(s.contains("detached: the run goes on"), "{s}");
    assert!(!room.alternate(), "the terminal is restored");
    assert!(alive(pid), "the server outlives its client");

    // The workers live on and the run keeps moving: s3 completes while nobody watches.
    let v = status_json(dir);
    assert_eq!(task(&v, "s1")["worker"], true, "{v}");
    assert_eq!(task(&v, "s2")["worker"], true, "{v}");
    wait_until("s3 completes while detached", 30, || {
        let m = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
        let m: Value = serde_json::from_str(&m).unwrap();
        m["phases"][0]["tasks"][2]["status"] == "complete"
    });

    // `ls` lists it, with counts.
    let out = sy(dir, &["ls"]);
    let ls = String::from_utf8_lossy(&out.stdout);
    assert!(
        ls.contains(&format!("pid {pid}")) && ls.contains("1 complete"),
        "{ls}"
    );

    // Two control rooms attach at once and see the same state and the same screens.
    let a = PtyApp::spawn(&["attach", "manifest.json"], dir, 30, 110);
    let b = PtyApp::spawn(&["attach", "manifest.json"], dir, 30, 110);
    for c in [&a, &b] {
        let s = c.wait_for("Pick a colour:", 20);
        assert!(s.contains("✔ complete"), "{s}");
        assert!(s.contains("ready-s2 attempt 1"), "scrollback kept: {s}");
    }

    // ctl answers the prompt: both rooms see the worker's reply.
    let out = sy(dir, &["ctl", "manifest.json", "answer", "s1", "green"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for c in [&a, &b] {
        c.wait_for("answered:green", 10);
    }
    // ctl nudge types a line; ctl retry restarts a worker (attempt 2).
    let out = sy(
        dir,
        &[
            "ctl",
            "manifest.json",
            "nudge",
            "s2",
            "use",
            "the",
            "new",
            "API",
        ],
    );
    assert!(out.status.success());
    wait_until("the nudge reaches s2", 10, || {
        transcript(dir, "s2").contains("got:use the new API")
    });
    let out = sy(dir, &["ctl", "manifest.json", "retry", "s2"]);
    assert!(out.status.success());
    a.wait_for("ready-s2 attempt 2", 15);

    // Refusals are clear and exit 1; bad arguments exit 3.
    let out = sy(dir, &["ctl", "manifest.json", "answer", "nope", "y"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no task \"nope\""));
    let out = sy(dir, &["ctl", "manifest.json", "nudge", "s3"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no running worker"));
    let out = sy(dir, &["ctl", "manifest.json", "answer", "s1"]);
    assert_eq!(out.status.code(), Some(3));

    // stop ends the run: workers stop, running tasks stay resumable, clients are told.
    drop(a);
    let out = sy(dir, &["stop", "manifest.json"]);
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("run stopped — exit 1"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!alive(pid), "the server ended");
    b.wait_for("run stopped", 10);
    let m = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
    assert!(m.contains("\"status\": \"running\""), "resumable: {m}");
    let out = sy(dir, &["ctl", "manifest.json", "retry", "s1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no switchyard server runs"));
}

#[test]
fn a_second_run_joins_the_first_and_no_task_starts_twice() {
    let r = project();
    let dir = r.path();
    let _stop = StopOnDrop(dir.join("manifest.json"));
    // Two headless runs started together.
    let spawn = || {
        Command::new(bin())
            .args(["run", "--headless", "manifest.json"])
            .current_dir(dir)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut first = spawn();
    let mut second = spawn();
    wait_until("both workers started", 20, || {
        transcript(dir, "s2").contains("ready-s2")
    });
    std::thread::sleep(std::time::Duration::from_millis(500));
    let pid = server_pid(&dir.join(".sy")).unwrap();
    // One server; each task started once.
    assert_eq!(transcript(dir, "s2").matches("ready-s2").count(), 1);
    assert_eq!(transcript(dir, "s1").matches("ready-s1").count(), 1);
    let v = status_json(dir);
    assert_eq!(task(&v, "s1")["attempts"], 1);
    let _ = first.kill();
    let _ = second.kill();
    let _ = first.wait();
    let _ = second.wait();
    assert!(alive(pid), "clients leaving does not stop the run");
    // A third client joins the same server and says so.
    let mut third = spawn();
    wait_until("the third client joined", 10, || {
        std::fs::read_to_string(dir.join(".sy/logs/server.log"))
            .unwrap_or_default()
            .matches("Headless")
            .count()
            >= 1
    });
    std::thread::sleep(std::time::Duration::from_millis(500));
    let _ = third.kill();
    let out = third.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("joined the run already going") && err.contains(&pid.to_string()),
        "{err}"
    );
    assert_eq!(server_pid(&dir.join(".sy")), Some(pid));
}

#[test]
fn garbage_on_the_socket_and_a_wrong_version_never_take_the_server_down() {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    let r = project();
    let dir = r.path();
    let _stop = StopOnDrop(dir.join("manifest.json"));
    let mut run = Command::new(bin())
        .args(["run", "--headless", "manifest.json"])
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until("a server", 20, || server_pid(&dir.join(".sy")).is_some());
    let lock = std::fs::read_dir(dir.join(".sy/run"))
        .unwrap()
        .flatten()
        .find(|e| e.path().extension().is_some_and(|x| x == "lock"))
        .unwrap()
        .path();
    let info: Value = serde_json::from_str(&std::fs::read_to_string(lock).unwrap()).unwrap();
    let socket = info["socket"].as_str().unwrap().to_string();
    wait_until("the socket", 20, || Path::new(&socket).exists());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "only the owner may connect");

    // Garbage, a frame that claims 4 GB, a half message, then a wrong protocol version.
    let mut s = UnixStream::connect(&socket).unwrap();
    let _ = s.write_all(b"GET / HTTP/1.1\r\n\r\n");
    drop(s);
    let mut s = UnixStream::connect(&socket).unwrap();
    let _ = s.write_all(&[0xff, 0xff, 0xff, 0xff, 0]);
    drop(s);
    let mut s = UnixStream::connect(&socket).unwrap();
    let _ = s.write_all(&[0, 0, 0, 50, 0, b'{']);
    drop(s);
    let mut s = UnixStream::connect(&socket).unwrap();
    let hello = br#"{"type":"hello","protocol":999,"version":"9.9.9","role":{"role":"control"}}"#;
    let mut frame = ((hello.len() + 1) as u32).to_be_bytes().to_vec();
    frame.push(0);
    frame.extend_from_slice(hello);
    s.write_all(&frame).unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.contains("refused") && text.contains("9.9.9") && text.contains("protocol 999"),
        "names both versions: {text}"
    );

    // The server still answers.
    let v = status_json(dir);
    assert_eq!(task(&v, "s2")["worker"], true, "{v}");
    let _ = run.kill();
    let _ = run.wait();
}
