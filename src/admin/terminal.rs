//! The console's terminal (`--admin-terminal` only): a WebSocket at `/admin/api/terminal` to a
//! shell on a pseudo-terminal (crate `pty-process`), as the user the proxy runs as. The page
//! sends `{"type":"input","data":…}` and `{"type":"resize","cols":…,"rows":…}` as text frames;
//! the shell's output comes back as binary frames. Each session's start and end (who, the
//! shell's pid, how long, how many bytes) go to the audit log, never what was typed.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::ws::{Message as Ws, WebSocket};
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Admin;
use super::auth::Session;

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum FromPage {
    Input { data: String },
    Resize { cols: u16, rows: u16 },
}

fn size(cols: u16, rows: u16) -> pty_process::Size {
    pty_process::Size::new(rows.clamp(2, 500), cols.clamp(2, 1000))
}

/// The shell: `$SHELL`, else bash, else sh.
fn shell() -> String {
    std::env::var("SHELL")
        .ok()
        .filter(|s| !s.is_empty() && std::path::Path::new(s).exists())
        .or_else(|| {
            ["/bin/bash", "/usr/bin/bash"]
                .into_iter()
                .find(|p| std::path::Path::new(p).exists())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "/bin/sh".into())
}

/// Run one terminal session over `ws` until either side ends it.
pub async fn session(
    admin: Arc<Admin>,
    who: Session,
    mut ws: WebSocket,
    cols: u16,
    rows: u16,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let _permit = permit;
    let started = Instant::now();
    let (pty, pts) = match pty_process::open() {
        Ok(p) => p,
        Err(e) => {
            let _ = ws
                .send(Ws::Binary(
                    format!("cannot open a pseudo-terminal: {e}\r\n")
                        .into_bytes()
                        .into(),
                ))
                .await;
            return;
        }
    };
    let _ = pty.resize(size(cols, rows));
    let sh = shell();
    let home = std::env::var("HOME").unwrap_or_else(|_| "/".into());
    let child = pty_process::Command::new(&sh)
        .arg("-i")
        .env("TERM", "xterm-256color")
        .env("COLORTERM", "truecolor")
        .current_dir(&home)
        .kill_on_drop(true)
        .spawn(pts);
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            let _ = ws
                .send(Ws::Binary(
                    format!("cannot start {sh}: {e}\r\n").into_bytes().into(),
                ))
                .await;
            return;
        }
    };
    let pid = child.id();
    admin.audit(
        "terminal-start",
        &who.user,
        json!({ "shell": sh, "pid": pid }),
    );
    let (mut from_pty, mut to_pty) = pty.into_split();
    let mut buf = vec![0u8; 16 * 1024];
    let (mut bytes_in, mut bytes_out) = (0u64, 0u64);
    let why = loop {
        tokio::select! {
            got = from_pty.read(&mut buf) => match got {
                Ok(0) | Err(_) => break "the shell ended",
                Ok(n) => {
                    bytes_out += n as u64;
                    if ws.send(Ws::Binary(buf[..n].to_vec().into())).await.is_err() {
                        break "the page went away";
                    }
                }
            },
            msg = ws.recv() => match msg {
                None | Some(Err(_)) | Some(Ok(Ws::Close(_))) => break "the page closed it",
                Some(Ok(Ws::Text(t))) => match serde_json::from_str::<FromPage>(t.as_str()) {
                    Ok(FromPage::Input { data }) => {
                        bytes_in += data.len() as u64;
                        if to_pty.write_all(data.as_bytes()).await.is_err() {
                            break "the shell ended";
                        }
                    }
                    Ok(FromPage::Resize { cols, rows }) => {
                        let _ = to_pty.resize(size(cols, rows));
                    }
                    Err(_) => {}
                },
                Some(Ok(Ws::Binary(b))) => {
                    bytes_in += b.len() as u64;
                    if to_pty.write_all(&b).await.is_err() {
                        break "the shell ended";
                    }
                }
                Some(Ok(_)) => {}
            },
            _ = child.wait() => break "the shell ended",
        }
    };
    // Hang up, as a closed SSH session does: closing the terminal sends SIGHUP to the shell,
    // which passes it on to its jobs; a shell that does not end is killed after 2 s.
    drop(from_pty);
    drop(to_pty);
    let status = match tokio::time::timeout(std::time::Duration::from_secs(2), child.wait()).await {
        Ok(s) => s.ok().and_then(|s| s.code()),
        Err(_) => {
            let _ = child.start_kill();
            child.wait().await.ok().and_then(|s| s.code())
        }
    };
    // Whatever the shell left in its session hears the hangup too (a shell killed, or one
    // that did not pass it on); what ignores SIGHUP (`nohup`) stays, as over SSH.
    if let Some(sid) = pid.and_then(|p| i32::try_from(p).ok()) {
        hang_up_session(sid);
    }
    let _ = ws.send(Ws::Close(None)).await;
    admin.audit(
        "terminal-end",
        &who.user,
        json!({
            "pid": pid,
            "why": why,
            "exitCode": status,
            "seconds": started.elapsed().as_secs(),
            "bytesIn": bytes_in,
            "bytesOut": bytes_out,
        }),
    );
}

/// SIGHUP to every process of session `sid` (the shell was its leader).
fn hang_up_session(sid: i32) {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid pgrp session …`: the command may hold spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let session = rest
            .split_whitespace()
            .nth(3)
            .and_then(|s| s.parse::<i32>().ok());
        if session == Some(sid) {
            #[allow(unsafe_code)]
            // SAFETY: kill only sends a signal; a process gone meanwhile yields ESRCH.
            unsafe {
                libc::kill(pid, libc::SIGHUP);
            }
        }
    }
}
