//! Writes the seed corpora (`fuzz/seeds/<target>/`) from the project's test vectors and the
//! worked hex examples of the AWSFILE program (`docs/protocol.md` §4). The seeds are committed;
//! run this again when a format changes:
//!
//! ```sh
//! cd fuzz && cargo run --example write_seeds -- seeds
//! ```

mod certs;
mod dropin;
mod forward;
mod forward_group;
mod messages;
mod rpc;

use std::path::{Path, PathBuf};

use certs::{cert_extensions, pem_load};
use dropin::dropin_config;
use forward::forward;
use forward_group::forward_group;
use rpc::{bind_response, record_stream, rpc_message};

struct Seeds {
    root: PathBuf,
}

impl Seeds {
    fn write(&self, target: &str, name: &str, bytes: &[u8]) {
        let dir = self.root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

fn main() {
    let root = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("seeds"));
    let vectors = Path::new(env!("CARGO_MANIFEST_DIR")).join("../proxy/tests/vectors/iam");
    let s = Seeds { root };
    record_stream(&s);
    rpc_message(&s);
    bind_response(&s);
    dropin_config(&s);
    pem_load(&s, &vectors);
    cert_extensions(&s, &vectors);
    forward(&s);
    forward_group(&s);
    println!("seeds written to {}", s.root.display());
}
