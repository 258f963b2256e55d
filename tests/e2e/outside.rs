//! What outside clients, servers and harnesses found: resources with the same URI on two
//! servers, silent remotes in /status, unasked log messages, orphaned grandchildren, clients
//! that stop reading, shutdown that hangs, and remotes that never answer.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::util::*;

fn rpc(id: u64, method: &str, params: Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string()
}

/// The JSON-RPC answer in a reply (a JSON or an SSE body).
fn answer(r: &Reply) -> Value {
    r.events()
        .into_iter()
        .rfind(|m| m.get("id").is_some())
        .unwrap_or_else(|| r.json())
}

/// Every page of a merged list.
async fn all_pages(url: &str, sid: &str, method: &str, field: &str) -> Vec<Value> {
    let mut items = vec![];
    let mut cursor: Option<Value> = None;
    for n in 0..100 {
        let params = match &cursor {
            Some(c) => json!({ "cursor": c }),
            None => json!({}),
        };
        let a = answer(&post(url, Some(sid), &rpc(100 + n, method, params), &[]).await);
        items.extend(a["result"][field].as_array().cloned().unwrap_or_default());
        cursor = a["result"]
            .get("nextCursor")
            .cloned()
            .filter(|c| !c.is_null());
        if cursor.is_none() {
            break;
        }
    }
    items
}

#[tokio::test]
async fn resources_with_the_same_uri_on_two_servers_are_each_reachable() {
    // Two copies of server-everything (one on stdio, one remote) and two demo servers: the
    // same URIs twice each.
    let port = free_port();
    let mut ev = everything();
    let node = ev.remove(0);
    ev.push("streamableHttp".into());
    let _remote = Running::spawn(&node, &ev, &[("PORT", port.to_string())]);
    wait_port(port, Duration::from_secs(30));
    let everything_js = everything()[1].clone();
    let config = temp_file(
        "same-uris",
        &format!(
            r#"{{ "mcpServers": {{
    "one": {{ "command": "{BIN}", "args": ["--demo-server"] }},
    "two": {{ "command": "{BIN}", "args": ["--demo-server"] }},
    "ev": {{ "command": "{node}", "args": ["{everything_js}", "stdio"] }},
    "ev_remote": {{ "url": "http://127.0.0.1:{port}/mcp" }}
}} }}"#
        ),
    );
    let proxy = Proxy::start(&["--config", &config, "--page-size", "25"]);
    let url = proxy.url("/mcp");
    let sid = session(&url).await;

    let resources = all_pages(&url, &sid, "resources/list", "resources").await;
    let uris: Vec<String> = resources
        .iter()
        .filter_map(|r| r["uri"].as_str().map(str::to_owned))
        .collect();
    let unique: HashSet<&String> = uris.iter().collect();
    assert_eq!(unique.len(), uris.len(), "a URI is listed twice: {uris:?}");
    // The first server in the file keeps the URI; the later one's is renamed.
    assert!(uris.contains(&"demo://readme".to_owned()), "{uris:?}");
    assert!(uris.contains(&"two+demo://readme".to_owned()), "{uris:?}");
    assert!(
        uris.contains(&"demo://resource/static/document/architecture.md".to_owned())
            && uris
                .contains(&"ev-remote+demo://resource/static/document/architecture.md".to_owned()),
        "{uris:?}"
    );
    let log = proxy.run.log_text();
    assert!(
        log.contains("`demo://readme` is offered by an earlier server too")
            && log.contains("two+demo://readme"),
        "{log}"
    );

    // Every listed resource can be read, and the answer names it as listed.
    let mut id = 1000;
    for uri in &uris {
        id += 1;
        let a = answer(
            &post(
                &url,
                Some(&sid),
                &rpc(id, "resources/read", json!({ "uri": uri })),
                &[],
            )
            .await,
        );
        let contents = a["result"]["contents"]
            .as_array()
            .unwrap_or_else(|| panic!("{uri}: {a}"));
        assert_eq!(contents[0]["uri"], json!(uri), "{a}");
    }
    // The two demo servers are two processes: each read reached its own.
    let read = async |id: u64, uri: &str| {
        let a = answer(
            &post(
                &url,
                Some(&sid),
                &rpc(id, "resources/read", json!({ "uri": uri })),
                &[],
            )
            .await,
        );
        a["result"]["contents"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let first = read(1, "demo://readme").await;
    let second = read(2, "two+demo://readme").await;
    assert!(
        first.contains("process") && second.contains("process"),
        "{first} / {second}"
    );
    assert_ne!(first, second, "both reads reached the same server");
    let servers = proxy.servers().await;
    let pid = |name: &str| servers[name]["pid"].as_u64().expect("pid").to_string();
    assert!(
        first.contains(&pid("one")) && second.contains(&pid("two")),
        "{first} / {second}"
    );

    // Templates too: listed once each, and a URI made from the renamed one reaches its server.
    let templates = all_pages(&url, &sid, "resources/templates/list", "resourceTemplates").await;
    let names: Vec<&str> = templates
        .iter()
        .filter_map(|t| t["uriTemplate"].as_str())
        .collect();
    assert!(
        names.contains(&"demo://item/{id}") && names.contains(&"two+demo://item/{id}"),
        "{names:?}"
    );
    assert_eq!(
        names.iter().collect::<HashSet<_>>().len(),
        names.len(),
        "{names:?}"
    );
    let item = read(3, "two+demo://item/7").await;
    assert!(
        item.contains("item 7") && item.contains(&pid("two")),
        "{item}"
    );
    let item = read(4, "demo://item/7").await;
    assert!(item.contains(&pid("one")), "{item}");

    // Completions reach the server behind the renamed template.
    let a = answer(
        &post(
            &url,
            Some(&sid),
            &rpc(
                5,
                "completion/complete",
                json!({"ref": {"type": "ref/resource", "uri": "two+demo://item/{id}"}, "argument": {"name": "id", "value": "b"}}),
            ),
            &[],
        )
        .await,
    );
    assert_eq!(a["result"]["completion"]["values"], json!(["bob"]), "{a}");

    // A subscription to the renamed resource: its update comes back under the same name.
    let mut stream = reqwest::Client::new()
        .get(&url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &sid)
        .send()
        .await
        .expect("GET stream");
    let a = answer(
        &post(
            &url,
            Some(&sid),
            &rpc(
                6,
                "resources/subscribe",
                json!({"uri": "two+demo://readme"}),
            ),
            &[],
        )
        .await,
    );
    assert!(a.get("result").is_some(), "{a}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = String::new();
    while Instant::now() < deadline && !seen.contains("resources/updated") {
        if let Ok(Ok(Some(chunk))) =
            tokio::time::timeout(Duration::from_secs(1), stream.chunk()).await
        {
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
    assert!(
        seen.contains("notifications/resources/updated") && seen.contains("two+demo://readme"),
        "{seen}"
    );
}
