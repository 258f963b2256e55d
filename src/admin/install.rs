//! Installs: a server's `installCommands`, run one after the other with `sh -c` in the parent
//! folder of its install directory (`installDirectory`, else `TOOLS_FOLDER/NAME`, else
//! `./tools/NAME`), as seed 001 does. Their output is kept (the last `--install-output-lines`
//! lines) and streamed line by line; an install can be cancelled (its process group gets
//! SIGTERM, then SIGKILL); one runs at a time per server. Install directories outside the base
//! folder are refused.

use std::collections::{HashMap, VecDeque};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::Event;

/// What an install will do.
#[derive(Debug, Clone)]
pub struct Plan {
    pub directory: PathBuf,
    /// Where the commands run: the install directory's parent.
    pub cwd: PathBuf,
    pub commands: Vec<String>,
}

/// The base folder of installs: `--tools-folder` / `TOOLS_FOLDER`, else `./tools`.
pub fn base_folder(given: Option<&Path>) -> PathBuf {
    let base = match given {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("tools"),
    };
    absolute(&base)
}

/// `p` made absolute against the working directory, with `.` and `..` resolved by name.
fn absolute(p: &Path) -> PathBuf {
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(p)
    };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// `p` with symbolic links resolved as far as it exists.
fn resolved(p: &Path) -> PathBuf {
    let mut existing = p.to_path_buf();
    let mut rest = vec![];
    while !existing.exists() {
        match (
            existing.file_name().map(|n| n.to_owned()),
            existing.parent(),
        ) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent.to_path_buf();
            }
            _ => break,
        }
    }
    let mut out = std::fs::canonicalize(&existing).unwrap_or(existing);
    for name in rest.into_iter().rev() {
        out.push(name);
    }
    out
}

/// The install of server `name` as its entry says; refused (with the field) when it has no
/// commands or its directory is outside `base`.
pub fn plan(name: &str, entry: &Value, base: &Path) -> Result<Plan, (String, String)> {
    let bad = |f: &str, w: String| (f.to_owned(), w);
    let commands: Vec<String> = match entry.get("installCommands") {
        None | Some(Value::Null) => vec![],
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str().map(str::to_owned).ok_or_else(|| {
                    bad(
                        "installCommands",
                        "installCommands: must be a list of shell commands".into(),
                    )
                })
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(bad(
                "installCommands",
                "installCommands: must be a list of shell commands".into(),
            ));
        }
    };
    if commands.is_empty() {
        return Err(bad(
            "installCommands",
            format!("server `{name}` has no installCommands"),
        ));
    }
    let directory = match entry.get("installDirectory") {
        None | Some(Value::Null) => base.join(name),
        Some(Value::String(s)) if !s.is_empty() => {
            let p = PathBuf::from(s);
            if p.is_absolute() { p } else { base.join(p) }
        }
        Some(_) => {
            return Err(bad(
                "installDirectory",
                "installDirectory: must be a folder path".into(),
            ));
        }
    };
    let directory = absolute(&directory);
    let within = resolved(&directory);
    let base_resolved = resolved(&absolute(base));
    if !within.starts_with(&base_resolved) || within == base_resolved {
        return Err(bad(
            "installDirectory",
            format!(
                "installDirectory: {} is outside the install base {} (TOOLS_FOLDER / --tools-folder)",
                directory.display(),
                base_resolved.display()
            ),
        ));
    }
    let cwd = directory
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| base.to_path_buf());
    Ok(Plan {
        directory,
        cwd,
        commands,
    })
}

/// One install of one server.
pub struct Run {
    pub state: Mutex<RunState>,
    cancel: CancellationToken,
}

#[derive(Debug, Clone)]
pub struct RunState {
    /// `running`, `succeeded`, `failed`, `cancelled`.
    pub state: &'static str,
    pub exit_code: Option<i32>,
    pub directory: PathBuf,
    pub commands: usize,
    pub lines: VecDeque<(&'static str, String)>,
}

impl Run {
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    pub fn json(&self, with_lines: bool) -> Value {
        let Ok(s) = self.state.lock() else {
            return json!({ "state": "none" });
        };
        let mut v = json!({
            "state": s.state,
            "exitCode": s.exit_code,
            "directory": s.directory,
            "commands": s.commands,
        });
        if with_lines {
            v["lines"] = s
                .lines
                .iter()
                .map(|(stream, text)| json!({ "stream": stream, "text": text }))
                .collect();
        }
        v
    }
}

/// Every server's latest install.
pub struct Installs {
    runs: Mutex<HashMap<String, Arc<Run>>>,
    events: broadcast::Sender<Event>,
    max_lines: usize,
}

impl Installs {
    pub fn new(events: broadcast::Sender<Event>, max_lines: usize) -> Installs {
        Installs {
            runs: Default::default(),
            events,
            max_lines,
        }
    }

    pub fn get(&self, server: &str) -> Option<Arc<Run>> {
        self.runs.lock().ok()?.get(server).cloned()
    }

    /// Start an install of `server`; refused while one runs. `done` is called with whether
    /// it succeeded.
    pub fn start(
        &self,
        server: &str,
        plan: Plan,
        done: impl FnOnce(bool) + Send + 'static,
    ) -> Result<Arc<Run>, String> {
        let run = Arc::new(Run {
            state: Mutex::new(RunState {
                state: "running",
                exit_code: None,
                directory: plan.directory.clone(),
                commands: plan.commands.len(),
                lines: VecDeque::new(),
            }),
            cancel: CancellationToken::new(),
        });
        {
            let mut runs = self
                .runs
                .lock()
                .map_err(|_| "the install table is unusable".to_owned())?;
            if runs
                .get(server)
                .is_some_and(|r| r.state.lock().is_ok_and(|s| s.state == "running"))
            {
                return Err(format!("an install of `{server}` is already running"));
            }
            runs.insert(server.to_owned(), run.clone());
        }
        let out = Output {
            server: server.to_owned(),
            run: run.clone(),
            events: self.events.clone(),
            max_lines: self.max_lines,
        };
        out.status("running");
        tokio::spawn(async move {
            let result = execute(&plan, &out, out.run.cancel.clone()).await;
            let (state, code) = match result {
                Outcome::Succeeded => ("succeeded", Some(0)),
                Outcome::Failed(code, why) => {
                    out.line("stderr", why);
                    ("failed", code)
                }
                Outcome::Cancelled => ("cancelled", None),
            };
            if let Ok(mut s) = out.run.state.lock() {
                s.state = state;
                s.exit_code = code;
            }
            out.status(&match (state, code) {
                ("failed", Some(c)) => format!("failed (exit {c})"),
                _ => state.to_owned(),
            });
            done(state == "succeeded");
        });
        Ok(run)
    }
}

/// Where one install's output goes: its kept lines, and the pages.
#[derive(Clone)]
struct Output {
    server: String,
    run: Arc<Run>,
    events: broadcast::Sender<Event>,
    max_lines: usize,
}

impl Output {
    fn line(&self, stream: &'static str, text: String) {
        if let Ok(mut s) = self.run.state.lock() {
            if s.lines.len() >= self.max_lines {
                s.lines.pop_front();
            }
            s.lines.push_back((stream, text.clone()));
        }
        let _ = self.events.send(Event {
            kind: "install",
            data: json!({ "server": self.server, "stream": stream, "text": text }).to_string(),
        });
    }

    fn status(&self, text: &str) {
        let _ = self.events.send(Event {
            kind: "install",
            data: json!({ "server": self.server, "stream": "status", "text": text }).to_string(),
        });
    }
}

enum Outcome {
    Succeeded,
    Failed(Option<i32>, String),
    Cancelled,
}

async fn execute(plan: &Plan, out: &Output, cancel: CancellationToken) -> Outcome {
    if let Err(e) = std::fs::create_dir_all(&plan.cwd) {
        return Outcome::Failed(None, format!("cannot create {}: {e}", plan.cwd.display()));
    }
    for command in &plan.commands {
        out.line("status", format!("$ {command}"));
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c")
            .arg(command)
            .current_dir(&plan.cwd)
            .env("INSTALL_DIRECTORY", &plan.directory)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => return Outcome::Failed(None, format!("cannot run `sh -c {command}`: {e}")),
        };
        let pid = child.id();
        // Read while the command runs, so that each line is passed on as it comes.
        let readers = [
            child
                .stdout
                .take()
                .map(|r| tokio::spawn(pump(Box::new(r), "stdout", out.clone()))),
            child
                .stderr
                .take()
                .map(|r| tokio::spawn(pump(Box::new(r), "stderr", out.clone()))),
        ];
        let reading = futures_util::future::join_all(readers.into_iter().flatten());
        let waited = tokio::select! {
            (status, _) = async { let s = child.wait().await; (s, ()) } => Some(status),
            _ = cancel.cancelled() => None,
        };
        match waited {
            None => {
                end_group(pid, &mut child).await;
                let _ = tokio::time::timeout(Duration::from_secs(1), reading).await;
                out.line("status", "cancelled".into());
                return Outcome::Cancelled;
            }
            Some(Err(e)) => return Outcome::Failed(None, format!("`{command}`: {e}")),
            Some(Ok(status)) => {
                // What the command wrote before it ended; children it left behind that keep
                // the pipes open are not waited for long.
                let _ = tokio::time::timeout(Duration::from_secs(2), reading).await;
                if !status.success() {
                    end_group(pid, &mut child).await;
                    let code = status.code();
                    return Outcome::Failed(
                        code,
                        format!(
                            "`{command}` failed ({})",
                            code.map(|c| format!("exit {c}"))
                                .unwrap_or_else(|| "killed by a signal".into())
                        ),
                    );
                }
            }
        }
    }
    Outcome::Succeeded
}

/// SIGTERM to the command's process group, then SIGKILL after 2 s.
async fn end_group(pid: Option<u32>, child: &mut tokio::process::Child) {
    let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) else {
        let _ = child.kill().await;
        return;
    };
    #[allow(unsafe_code)]
    // SAFETY: killpg only sends a signal; a stale group id yields ESRCH, which is ignored.
    unsafe {
        libc::killpg(pid, libc::SIGTERM);
    }
    if tokio::time::timeout(Duration::from_secs(2), child.wait())
        .await
        .is_err()
    {
        #[allow(unsafe_code)]
        // SAFETY: as above.
        unsafe {
            libc::killpg(pid, libc::SIGKILL);
        }
        let _ = child.wait().await;
    }
}

type Reader = Box<dyn tokio::io::AsyncRead + Unpin + Send>;

async fn pump(r: Reader, stream: &'static str, out: Output) {
    let mut lines = tokio::io::BufReader::new(r).split(b'\n');
    while let Ok(Some(line)) = lines.next_segment().await {
        let mut text = String::from_utf8_lossy(&line).into_owned();
        if text.ends_with('\r') {
            text.pop();
        }
        out.line(stream, text);
    }
}

/// `--install NAME|all`: run the installs of a servers file on the command line, printing
/// their output; whether all succeeded.
pub async fn run_cli(
    file: &Path,
    which: &str,
    force: bool,
    base: &Path,
    max_lines: usize,
) -> Result<(), String> {
    let snap = super::files::read(file)?;
    let entries = super::files::entries(&snap.root);
    let chosen: Vec<(String, Value)> = if which == "all" {
        entries
            .into_iter()
            .filter(|(_, e)| e.get("installCommands").is_some())
            .collect()
    } else {
        let e = entries
            .into_iter()
            .find(|(n, _)| n == which)
            .ok_or_else(|| format!("{}: no server named `{which}`", file.display()))?;
        vec![e]
    };
    if chosen.is_empty() {
        println!("no server of {} has installCommands", file.display());
        return Ok(());
    }
    let (events, mut rx) = broadcast::channel::<Event>(4096);
    let installs = Installs::new(events, max_lines);
    let mut failed = vec![];
    for (name, entry) in chosen {
        let plan = plan(&name, &entry, base).map_err(|(_, w)| format!("{name}: {w}"))?;
        if plan.directory.exists() && !force {
            println!(
                "[{name}] {} exists; not installing (--reinstall runs the commands anyway)",
                plan.directory.display()
            );
            continue;
        }
        let (tx, done) = tokio::sync::oneshot::channel();
        installs.start(&name, plan, move |ok| {
            let _ = tx.send(ok);
        })?;
        let mut done = std::pin::pin!(done);
        loop {
            tokio::select! {
                ev = rx.recv() => if let Ok(ev) = ev {
                    print_event(&ev);
                },
                ok = &mut done => {
                    while let Ok(ev) = rx.try_recv() {
                        print_event(&ev);
                    }
                    if !ok.unwrap_or(false) {
                        failed.push(name.clone());
                    }
                    break;
                }
            }
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("install failed: {}", failed.join(", ")))
    }
}

fn print_event(ev: &Event) {
    let Ok(v) = serde_json::from_str::<Value>(&ev.data) else {
        return;
    };
    let server = v["server"].as_str().unwrap_or("");
    let text = v["text"].as_str().unwrap_or("");
    match v["stream"].as_str() {
        Some("stderr") => eprintln!("[{server}] {text}"),
        _ => println!("[{server}] {text}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_directories_stay_inside_the_base() {
        let base = std::env::temp_dir().join("mcp-proxy-install-base");
        let cmds = json!({ "installCommands": ["true"] });
        let p = plan("one", &cmds, &base).expect("default directory");
        assert_eq!(p.directory, absolute(&base.join("one")));
        assert_eq!(p.cwd, absolute(&base));
        for bad in ["../elsewhere", "/etc", "sub/../../x", "."] {
            let e = json!({ "installCommands": ["true"], "installDirectory": bad });
            let r = plan("one", &e, &base);
            assert!(
                matches!(&r, Err((f, _)) if f == "installDirectory"),
                "{bad}: {r:?}"
            );
        }
        let e = json!({ "installCommands": ["true"], "installDirectory": "sub/dir" });
        assert!(plan("one", &e, &base).is_ok());
        let none = json!({ "command": "x" });
        assert!(matches!(plan("one", &none, &base), Err((f, _)) if f == "installCommands"));
    }
}
