//! The admin console's third-party browser files (the xterm.js terminal emulator) come from
//! the npm registry, at the versions pinned in admin/package-lock.json, at build time: they
//! are installed with `npm ci` into the build's own folder and embedded into the binary from
//! there. Nothing of them is kept in the repository.
//!
//! Without npm (or without the registry) the binary still builds: the console then says that
//! its terminal could not be built, and why.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The files the console serves at /admin/assets/vendor/, from node_modules.
const VENDOR: [(&str, &str); 3] = [
    ("xterm.js", "@xterm/xterm/lib/xterm.js"),
    ("xterm.css", "@xterm/xterm/css/xterm.css"),
    ("addon-fit.js", "@xterm/addon-fit/lib/addon-fit.js"),
];

fn main() {
    println!("cargo:rerun-if-changed=admin/package.json");
    println!("cargo:rerun-if-changed=admin/package-lock.json");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=MCP_PROXY_NPM");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    let vendor = out.join("admin-vendor");
    let _ = std::fs::create_dir_all(&vendor);
    if let Err(why) = fetch(&out, &vendor) {
        println!(
            "cargo:warning=the admin console's terminal emulator (xterm.js) was not built: {why}"
        );
        // The console shows this instead of a terminal.
        let note = format!(
            "window.MCP_PROXY_VENDOR_MISSING = {};\n",
            serde_quote(&format!(
                "The terminal emulator (xterm.js) was not built into this binary: {why}. Install Node.js with npm and build again."
            ))
        );
        let _ = std::fs::write(vendor.join("xterm.js"), note);
        let _ = std::fs::write(vendor.join("xterm.css"), "");
        let _ = std::fs::write(vendor.join("addon-fit.js"), "");
    }
}

fn fetch(out: &Path, vendor: &Path) -> Result<(), String> {
    let npm_dir = out.join("admin-npm");
    std::fs::create_dir_all(&npm_dir).map_err(|e| format!("cannot create {npm_dir:?}: {e}"))?;
    for f in ["package.json", "package-lock.json"] {
        std::fs::copy(Path::new("admin").join(f), npm_dir.join(f))
            .map_err(|e| format!("cannot copy admin/{f}: {e}"))?;
    }
    let npm = std::env::var("MCP_PROXY_NPM").unwrap_or_else(|_| "npm".into());
    let done = Command::new(&npm)
        .args([
            "ci",
            "--ignore-scripts",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
        ])
        .current_dir(&npm_dir)
        .status()
        .map_err(|e| format!("cannot run `{npm} ci`: {e}"))?;
    if !done.success() {
        return Err(format!("`{npm} ci` in {npm_dir:?} failed ({done})"));
    }
    for (name, from) in VENDOR {
        let src = npm_dir.join("node_modules").join(from);
        std::fs::copy(&src, vendor.join(name))
            .map_err(|e| format!("cannot copy {}: {e}", src.display()))?;
    }
    Ok(())
}

/// A JavaScript string literal.
fn serde_quote(s: &str) -> String {
    let mut q = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            '<' => q.push_str("\\u003c"),
            c if (c as u32) < 0x20 => q.push_str(&format!("\\u{:04x}", c as u32)),
            c => q.push(c),
        }
    }
    q.push('"');
    q
}
