//! The wire types in TypeScript, for browser clients: `clients/js/src/wire.ts` is generated from
//! this crate's types and must never drift from them. This test regenerates it and fails when
//! the file on disk differs; `CONVENE_WRITE_WIRE=1 cargo test -p convene-protocol` rewrites it.

use std::any::TypeId;
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use ts_rs::{Config, TS, TypeVisitor};

use crate::client::NodeRequest;
use crate::{ErrorCode, PROTOCOL_VERSION, ServerMessage, SessionRequest, UserRequest};

/// Every declaration reachable from the visited types, by name.
struct Declarations {
    config: Config,
    seen: HashSet<TypeId>,
    by_name: BTreeMap<String, String>,
}

impl TypeVisitor for Declarations {
    fn visit<T: TS + 'static + ?Sized>(&mut self) {
        // Types without a file of their own (strings, numbers, arrays) have no declaration.
        if T::output_path().is_none() || !self.seen.insert(TypeId::of::<T>()) {
            return;
        }
        let declaration = format!("{}export {}", T::docs().unwrap_or_default(), T::decl(&self.config));
        self.by_name.insert(T::ident(&self.config), declaration);
        T::visit_dependencies(self);
        T::visit_generics(self);
    }
}

const HEADER: &str = "\
// Convene's wire types, generated from the convene-protocol crate. Do not edit: change the Rust
// types and run `CONVENE_WRITE_WIRE=1 cargo test -p convene-protocol` to write this file again.
";

fn generate() -> String {
    // Sequence numbers and counts are JSON numbers, well within a double's exact integers.
    let config = Config::new().with_large_int("number");
    let mut declarations = Declarations { config, seen: HashSet::new(), by_name: BTreeMap::new() };
    declarations.visit::<NodeRequest>();
    declarations.visit::<SessionRequest>();
    declarations.visit::<UserRequest>();
    declarations.visit::<ServerMessage>();
    declarations.visit::<ErrorCode>();
    let mut text = HEADER.to_owned();
    text.push_str(&format!("\n/** The protocol version the server announces in `hello`. */\nexport const PROTOCOL_VERSION = {PROTOCOL_VERSION};\n"));
    text.push_str("\n/** Every message a client may send, tagged by `type`. */\nexport type ClientMessage = NodeRequest | SessionRequest | UserRequest;\n");
    for declaration in declarations.by_name.values() {
        text.push('\n');
        text.push_str(declaration);
        text.push('\n');
    }
    text
}

#[test]
fn typescript_wire_types_match_the_rust_types() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../clients/js/src/wire.ts");
    let generated = generate();
    if std::env::var_os("CONVENE_WRITE_WIRE").is_some() {
        std::fs::write(&path, &generated).expect("wire.ts is writable");
        return;
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "{} is out of date with the protocol crate: run `CONVENE_WRITE_WIRE=1 cargo test -p convene-protocol`",
        path.display()
    );
}
