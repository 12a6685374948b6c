//! Rebuilds the server when the web app's build output changes: `include_dir!` embeds
//! `web/dist` at compile time but does not tell Cargo to watch it.

fn main() {
    println!("cargo::rerun-if-changed=../../web/dist");
}
