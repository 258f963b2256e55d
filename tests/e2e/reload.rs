//! Live reload: the config file edited, or SIGHUP, while clients stay connected.

use std::time::Duration;

use crate::util::*;

fn demo_only() -> String {
    serde_json::json!({ "mcpServers": { "demo": { "command": BIN, "args": ["--demo-server"] } } })
        .to_string()
}

fn reload_client(config: &str, front: &[String]) -> (bool, String) {
    let mut args = vec![
        repo_file("tests/clients/reload_client.py"),
        "--config".into(),
        config.into(),
        "--demo".into(),
        BIN.into(),
        "--time".into(),
        time_server(),
    ];
    args.extend(front.iter().cloned());
    run_to_end(&python(), &args, Duration::from_secs(120))
}

/// An SDK client stays connected to /mcp while the file gains a server, loses one in the
/// middle of a call to it, turns broken, and gets new tool rules.
#[tokio::test]
async fn edits_of_the_config_file_reach_a_connected_client() {
    let config = temp_file("reload-http", &demo_only());
    let proxy = Proxy::start(&["--config", &config]);
    let (ok, out) = reload_client(&config, &["--url".into(), proxy.url("/mcp")]);
    assert!(ok, "{out}\nproxy log:\n{}", proxy.run.log_text());
    let log = proxy.run.log_text();
    for line in [
        "reloaded (a config file changed): added: time; unchanged: 1",
        "reloaded (a config file changed): removed: demo; unchanged: 1",
        "reload (a config file changed) failed, the running configuration stays:",
        "reloaded (a config file changed): new tool rules: time; unchanged: 0",
    ] {
        assert!(log.contains(line), "no `{line}` in the log:\n{log}");
    }
    // The broken file's error names the file and line.
    assert!(log.contains(&format!("stays: {config}:")), "{log}");
    // The removed server is gone from /servers and /status; the time server was never
    // restarted.
    let gone = reqwest::get(proxy.url("/servers/demo/mcp"))
        .await
        .expect("get");
    assert_eq!(gone.status(), 404);
    let servers = proxy.servers().await;
    assert_eq!(servers.keys().collect::<Vec<_>>(), ["time"], "{servers:?}");
    assert_eq!(servers["time"]["restarts"], 0, "{servers:?}");
    let _ = std::fs::remove_file(&config);
}

/// The same on stdio, where a desktop client has the merged view as its one server.
#[tokio::test]
async fn edits_of_the_config_file_reach_a_stdio_client() {
    let config = temp_file("reload-stdio", &demo_only());
    let (ok, out) = reload_client(
        &config,
        &[
            "--stdio".into(),
            BIN.into(),
            "--config".into(),
            config.clone(),
        ],
    );
    assert!(ok, "{out}");
    let _ = std::fs::remove_file(&config);
}

/// With --no-watch, an edit waits for SIGHUP. Then a changed server is restarted (its
/// sessions end: 404) while the untouched one keeps its sessions.
#[tokio::test]
async fn sighup_applies_the_file_and_only_the_difference() {
    let servers = |b_args: &[&str]| {
        serde_json::json!({ "mcpServers": {
            "a": { "command": BIN, "args": ["--demo-server"] },
            "b": { "command": BIN, "args": b_args },
        } })
        .to_string()
    };
    let config = temp_file("reload-hup", &servers(&["--demo-server"]));
    let proxy = Proxy::start(&["--config", &config, "--no-watch"]);
    let a = proxy.url("/servers/a/mcp");
    let b = proxy.url("/servers/b/mcp");
    let sa = session(&a).await;
    let sb = session(&b).await;
    let list = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;
    std::fs::write(&config, servers(&["--demo-server", "--demo-tools", "2"])).expect("write");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Not watched: nothing changed yet.
    let before = post(&b, Some(&sb), list, &[]).await;
    assert!(!before.body.contains("tool_1"), "{}", before.body);
    let pid = proxy.run.child.id() as i32;
    assert!(
        std::process::Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .expect("kill")
            .success()
    );
    proxy.run.wait_log(
        "reloaded (SIGHUP): restarted: b; unchanged: 1",
        Duration::from_secs(20),
    );
    // b's old session ended with its old server; a new one sees the new server.
    let stale = post(&b, Some(&sb), list, &[]).await;
    assert_eq!(stale.status, 404, "{}", stale.body);
    let sb = session(&b).await;
    let after = post(&b, Some(&sb), list, &[]).await;
    assert!(after.body.contains("tool_1"), "{}", after.body);
    // a was not touched: its session goes on.
    let still = post(&a, Some(&sa), list, &[]).await;
    assert!(still.body.contains("\"echo\""), "{}", still.body);
    // A SIGHUP with nothing changed changes nothing.
    std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .expect("kill");
    proxy
        .run
        .wait_log("reload (SIGHUP): nothing changed", Duration::from_secs(20));
    let _ = std::fs::remove_file(&config);
}
