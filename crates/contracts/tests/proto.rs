//! The gRPC contract: the `.proto` files against the released descriptor
//! set, and the proof that the check bites: each breaking edit of the files
//! is reported, an additive one is not.

use contracts::proto::{FILES, breaking_changes, compile, proto_root, release};

#[test]
fn the_proto_files_keep_the_released_contract() {
    let released = release().expect("contracts/proto/release.binpb");
    let current = compile(&proto_root()).expect("the .proto files compile");
    let breaks = breaking_changes(&released, &current);
    assert!(
        breaks.is_empty(),
        "breaking changes against the release:\n{}",
        breaks.join("\n")
    );
}

/// `(file, from, to)`: an edit of a `.proto` file.
type Edit<'a> = (&'a str, &'a str, &'a str);

/// A copy of the `.proto` tree with `edits` (`(file, from, to)`, each `from`
/// found exactly once) applied, compiled.
fn edited(edits: &[Edit<'_>]) -> prost_types::FileDescriptorSet {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("proto-edit-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for file in FILES {
        let target = dir.join(file);
        std::fs::create_dir_all(target.parent().expect("a parent")).expect("mkdir");
        let mut text = std::fs::read_to_string(proto_root().join(file)).expect("read");
        for (edited, from, to) in edits {
            if *edited == file {
                assert_eq!(text.matches(from).count(), 1, "{from:?} in {file}");
                text = text.replace(from, to);
            }
        }
        std::fs::write(&target, text).expect("write");
    }
    let set = compile(&dir).expect("the edited files compile");
    let _ = std::fs::remove_dir_all(&dir);
    set
}

fn breaks_of(edits: &[Edit<'_>]) -> Vec<String> {
    let released = release().expect("the release");
    breaking_changes(&released, &edited(edits))
}

const INVENTORY: &str = "inventory/v1/inventory.proto";

#[test]
fn breaking_edits_are_reported() {
    let cases: [(&[Edit<'static>], &str); 6] = [
        (
            &[(INVENTORY, "  int64 reserved = 3;\n", "")],
            "inventory.v1.Stock.reserved (field 3) removed",
        ),
        (
            &[(INVENTORY, "  int64 reserved = 3;", "  int64 reserved = 13;")],
            "inventory.v1.Stock.reserved renumbered from 3 to 13",
        ),
        (
            &[(INVENTORY, "  int64 reserved = 3;", "  string reserved = 3;")],
            "inventory.v1.Stock.reserved changed type from int64 to string",
        ),
        (
            &[(
                INVENTORY,
                "  int64 reserved = 3;",
                "  repeated int64 reserved = 3;",
            )],
            "inventory.v1.Stock.reserved changed type from int64 to repeated int64",
        ),
        (
            &[(
                INVENTORY,
                "rpc WatchStock(WatchStockRequest) returns (stream StockEvent);",
                "rpc WatchStock(WatchStockRequest) returns (StockEvent);",
            )],
            "inventory.v1.InventoryService/WatchStock changed from (inventory.v1.WatchStockRequest) returns (stream inventory.v1.StockEvent) to (inventory.v1.WatchStockRequest) returns (inventory.v1.StockEvent)",
        ),
        (
            &[(INVENTORY, "    KIND_CHANGED = 2;", "    KIND_CHANGED = 3;")],
            "inventory.v1.StockEvent.Kind.KIND_CHANGED renumbered from 2 to 3",
        ),
    ];
    for (edits, expected) in cases {
        let breaks = breaks_of(edits);
        assert_eq!(breaks, vec![expected.to_owned()], "{edits:?}");
    }
}

#[test]
fn additive_edits_pass() {
    let breaks = breaks_of(&[
        (
            INVENTORY,
            "  google.protobuf.Timestamp updated_at = 6;\n",
            "  google.protobuf.Timestamp updated_at = 6;\n  optional string note = 7;\n  repeated string tags = 8;\n",
        ),
        (
            INVENTORY,
            "message WarehouseStock {",
            "message Reservation {\n  string id = 1;\n}\n\nmessage WarehouseStock {",
        ),
        (
            INVENTORY,
            "    KIND_CHANGED = 2;",
            "    KIND_CHANGED = 2;\n    KIND_REMOVED = 3;",
        ),
    ]);
    assert!(breaks.is_empty(), "{breaks:?}");
}
