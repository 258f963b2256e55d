//! The official conformance suite (@modelcontextprotocol/conformance): its server scenarios
//! against the fixture server directly and through the proxy, and its client scenarios against
//! `mcp-proxy URL` with the official Python SDK client behind it.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::util::*;

fn fixture() -> String {
    repo_file("tests/servers/conformance_server.py")
}

fn conformance() -> String {
    peers()
        .join("node/node_modules/@modelcontextprotocol/conformance/dist/index.js")
        .display()
        .to_string()
}

/// Results land in a fresh directory so that runs never mix.
fn out_dir(tag: &str) -> String {
    let dir = std::env::temp_dir().join(format!(
        "mcp-proxy-conformance-{tag}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir.display().to_string()
}

/// The pre-release of the suite that has the scenarios of revision 2026-07-28.
fn conformance_2026() -> String {
    peers()
        .join("node/node_modules/conformance-2026/dist/index.js")
        .display()
        .to_string()
}

/// Run every active server scenario against `url`; each scenario's (passed, failed) counts.
fn server_suite(url: &str, tag: &str) -> BTreeMap<String, (u32, u32)> {
    let args = vec![
        conformance(),
        "server".into(),
        "--url".into(),
        url.into(),
        "-o".into(),
        out_dir(tag),
    ];
    let (_, out) = run_to_end(&node(), &args, Duration::from_secs(300));
    summarise(&out, url)
}

/// Each scenario's (passed, failed) counts from the suite's summary lines.
fn summarise(out: &str, url: &str) -> BTreeMap<String, (u32, u32)> {
    let summary: BTreeMap<String, (u32, u32)> = out
        .lines()
        .filter_map(|l| {
            let l = l
                .trim()
                .strip_prefix('✓')
                .or_else(|| l.trim().strip_prefix('✗'))?;
            let (name, counts) = l.trim().split_once(": ")?;
            let (p, f) = counts.split_once(" passed, ")?;
            let f = f.strip_suffix(" failed")?;
            Some((name.to_owned(), (p.parse().ok()?, f.parse().ok()?)))
        })
        .collect();
    assert!(
        summary.len() >= 25,
        "the suite ran too few scenarios against {url}:\n{out}"
    );
    summary
}

fn fixture_over_http() -> (Running, u16) {
    let port = free_port();
    let server = Running::spawn(
        &python(),
        &[fixture(), "--port".into(), port.to_string()],
        &[],
    );
    wait_port(port, Duration::from_secs(30));
    (server, port)
}

fn assert_same_as_direct(
    direct: &BTreeMap<String, (u32, u32)>,
    proxied: &BTreeMap<String, (u32, u32)>,
    how: &str,
) {
    let mut regressions = vec![];
    for (name, (passed, failed)) in direct {
        if *failed > 0 {
            continue;
        }
        match proxied.get(name) {
            Some((p, 0)) if *p > 0 || *passed == 0 => {}
            other => regressions.push(format!("{name}: direct {passed} passed, {how} {other:?}")),
        }
    }
    assert!(
        regressions.is_empty(),
        "scenarios passing directly fail {how}:\n{}",
        regressions.join("\n")
    );
}

#[test]
fn server_scenarios_pass_through_the_proxy_as_they_do_directly() {
    let (_server, port) = fixture_over_http();
    let direct = server_suite(&format!("http://127.0.0.1:{port}/mcp"), "direct");
    let passing = direct.values().filter(|(_, f)| *f == 0).count();
    assert!(passing >= 25, "the fixture itself fails: {direct:?}");

    // The fixture on stdio, shared by every session (the default for commands).
    let proxy = Proxy::start(&["--", &python(), &fixture()]);
    let shared = server_suite(&proxy.url("/mcp"), "shared");
    assert_same_as_direct(&direct, &shared, "behind mcp-proxy (shared stdio server)");
    // Every scenario passes through the proxy, including those about its own HTTP front.
    let failing: Vec<_> = shared.iter().filter(|(_, (_, f))| *f > 0).collect();
    assert!(failing.is_empty(), "failing through the proxy: {failing:?}");
    drop(proxy);

    // One stdio server per session.
    let proxy = Proxy::start(&["--per-client", "--", &python(), &fixture()]);
    let per_client = server_suite(&proxy.url("/mcp"), "per-client");
    assert_same_as_direct(&direct, &per_client, "behind mcp-proxy --per-client");
    drop(proxy);

    // The fixture's own Streamable HTTP endpoint, re-served by the proxy.
    let proxy = Proxy::start(&[&format!("http://127.0.0.1:{port}/mcp")]);
    let remote = server_suite(&proxy.url("/mcp"), "remote");
    assert_same_as_direct(&direct, &remote, "behind mcp-proxy URL --port");
    drop(proxy);

    // With inbound auth on: the suite's client sends the key in the query string.
    let proxy = Proxy::start(&[
        "--api-key",
        "suite:conformance-key-0123",
        "--audit-log",
        "-",
        "--",
        &python(),
        &fixture(),
    ]);
    let keyed = server_suite(&proxy.url("/mcp?key=conformance-key-0123"), "keyed");
    assert_same_as_direct(&direct, &keyed, "behind mcp-proxy with an API key");
    let failing: Vec<_> = keyed.iter().filter(|(_, (_, f))| *f > 0).collect();
    assert!(
        failing.is_empty(),
        "failing through the proxy with auth on: {failing:?}"
    );
}

fn client_scenario(name: &str) -> (bool, String) {
    let command = format!(
        "{} {} {}",
        python(),
        repo_file("tests/clients/conformance_client.py"),
        BIN
    );
    let args = vec![
        conformance(),
        "client".into(),
        "--command".into(),
        command,
        "--scenario".into(),
        name.into(),
        "-o".into(),
        out_dir(name),
    ];
    let (ok, out) = run_to_end(&node(), &args, Duration::from_secs(120));
    (ok && out.contains("OVERALL: PASSED"), out)
}

#[test]
fn client_scenarios_pass_through_mcp_proxy_url() {
    // The authorization scenarios (auth/*) have tests of their own, below.
    for name in [
        "initialize",
        "tools_call",
        "elicitation-sep1034-client-defaults",
        "sse-retry",
    ] {
        let (ok, out) = client_scenario(name);
        assert!(
            ok,
            "client scenario {name} failed through mcp-proxy URL:\n{out}"
        );
    }
}

/// The ids of the failed checks of `scenario`, from the suite's results in `dir`.
fn failed_checks(dir: &str, scenario: &str) -> Vec<String> {
    let prefix = format!("server-{scenario}-");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return vec![];
    };
    let mut ids = vec![];
    for e in entries.flatten() {
        if !e.file_name().to_string_lossy().starts_with(&prefix) {
            continue;
        }
        let text = std::fs::read_to_string(e.path().join("checks.json")).unwrap_or_default();
        let checks: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap_or_default();
        ids.extend(
            checks
                .iter()
                .filter(|c| c["status"] == "FAILURE")
                .filter_map(|c| c["id"].as_str().map(str::to_owned)),
        );
    }
    ids
}

/// Scenarios of 2026-07-28 that a session-based server cannot pass through any translator:
/// basic-elicitation wants the input request under the key `user_name`, which the server
/// chose, while a translated server request has no key of its own; multiple-input-requests
/// wants three requests in the first round, while a session-based server asks one at a time;
/// json-schema-2020-12 (pending in the suite) needs schema keywords the fixture's SDK 1.x
/// drops from tool definitions.
const UNREACHABLE_FROM_LEGACY: &[&str] = &[
    "input-required-result-basic-elicitation",
    "input-required-result-multiple-input-requests",
    "json-schema-2020-12",
];

/// The suite's requirements of revision 2026-07-28, against the session-based fixture (Python
/// SDK 1.x) behind the proxy: the proxy makes it a 2026-07-28 server.
#[test]
fn a_legacy_server_behind_the_proxy_meets_the_2026_07_28_requirements() {
    let proxy = Proxy::start(&["--", &python(), &fixture()]);
    let url = proxy.url("/mcp");
    let dir = out_dir("2026-07-28");
    let args = vec![
        conformance_2026(),
        "server".into(),
        "--url".into(),
        url.clone(),
        "--requirements".into(),
        "2026-07-28".into(),
        "-o".into(),
        dir.clone(),
    ];
    let (_, out) = run_to_end(&node(), &args, Duration::from_secs(600));
    let summary = summarise(&out, &url);
    let mut failing = vec![];
    for (name, (passed, failed)) in &summary {
        let extension = name.starts_with("tasks-");
        if *failed == 0 || extension || UNREACHABLE_FROM_LEGACY.contains(&name.as_str()) {
            continue;
        }
        // The fixture's SDK answers an unknown method with -32602, not -32601: the proxy
        // forwards unknown methods as they are, so that one check of server-stateless fails.
        let unknown_method = name == "server-stateless"
            && *failed == 1
            && failed_checks(&dir, name) == ["sep-2575-http-server-method-not-found-404"];
        if !unknown_method {
            failing.push(format!("{name}: {passed} passed, {failed} failed"));
        }
    }
    for needed in [
        "server-stateless",
        "caching",
        "http-header-validation",
        "http-custom-header-server-validation",
        "input-required-result-missing-input-response",
        "input-required-result-validate-input",
        "input-required-result-multi-round",
        "input-required-result-tampered-state",
        "input-required-result-non-tool-request",
        "input-required-result-capability-check",
        "tools-call-with-progress",
    ] {
        assert!(summary.contains_key(needed), "{needed} did not run:\n{out}");
    }
    assert!(
        failing.is_empty(),
        "2026-07-28 scenarios failing through the proxy:\n{}\n\n{out}",
        failing.join("\n")
    );
}

/// One authorization scenario of the 2026-07-28 suite against `mcp-proxy URL`, with the SDK
/// client behind it, a fresh token store, and tests/clients/browser.py as `$BROWSER` (the
/// suite's authorization endpoint redirects at once to the proxy's callback).
fn auth_scenario(name: &str) -> (bool, String) {
    let command = format!(
        "{} {} {}",
        python(),
        repo_file("tests/clients/conformance_client.py"),
        BIN
    );
    let tag = name.replace('/', "-");
    let cache = std::env::temp_dir().join(format!(
        "mcp-proxy-conformance-cache-{tag}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&cache);
    let args = vec![
        conformance_2026(),
        "client".into(),
        "--command".into(),
        command,
        "--scenario".into(),
        name.into(),
        "-o".into(),
        out_dir(&tag),
    ];
    let env = [
        ("XDG_CACHE_HOME", cache.display().to_string()),
        ("BROWSER", repo_file("tests/clients/browser.py")),
    ];
    let (ok, out) = run_to_end_env(&node(), &args, &env, Duration::from_secs(120));
    let _ = std::fs::remove_dir_all(&cache);
    (ok && out.contains("OVERALL: PASSED"), out)
}

fn auth_scenarios_pass(names: &[&str]) {
    let failed: Vec<String> = names
        .iter()
        .filter_map(|name| {
            let (ok, out) = auth_scenario(name);
            (!ok).then(|| format!("---- {name} ----\n{out}"))
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} authorization scenarios failed through mcp-proxy URL:\n{}",
        failed.len(),
        names.len(),
        failed.join("\n")
    );
}

// Scenarios of the suite that are left out, and why: the extensions
// auth/enterprise-managed-authorization (an enterprise IdP's ID token exchanged for an ID-JAG),
// auth/wif-jwt-bearer (a workload identity JWT as the grant) and auth/dpop, auth/dpop-nonce
// (sender-constrained tokens) are features the proxy does not offer.

/// The suite's core authorization scenarios (required for tier 1) and the 2025-03-26 ones.
#[test]
fn auth_client_scenarios_core_pass_through_mcp_proxy_url() {
    auth_scenarios_pass(&[
        "auth/metadata-default",
        "auth/metadata-var1",
        "auth/metadata-var2",
        "auth/metadata-var3",
        "auth/basic-cimd",
        "auth/scope-from-www-authenticate",
        "auth/scope-from-scopes-supported",
        "auth/scope-omitted-when-undefined",
        "auth/scope-step-up",
        "auth/scope-retry-limit",
        "auth/token-endpoint-auth-basic",
        "auth/token-endpoint-auth-post",
        "auth/token-endpoint-auth-none",
        "auth/pre-registration",
        "auth/2025-03-26-oauth-metadata-backcompat",
        "auth/2025-03-26-oauth-endpoint-fallback",
    ]);
}

/// The draft (2026-07-28) authorization scenarios and the client-credentials extension.
#[test]
fn auth_client_scenarios_draft_and_client_credentials_pass_through_mcp_proxy_url() {
    auth_scenarios_pass(&[
        "auth/resource-mismatch",
        "auth/offline-access-scope",
        "auth/offline-access-not-supported",
        "auth/authorization-server-migration",
        "auth/iss-supported",
        "auth/iss-not-advertised",
        "auth/iss-supported-missing",
        "auth/iss-wrong-issuer",
        "auth/iss-unexpected",
        "auth/iss-normalized",
        "auth/metadata-issuer-mismatch",
        "auth/client-credentials-basic",
        "auth/client-credentials-jwt",
    ]);
}
