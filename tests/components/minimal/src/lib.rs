//! A connector as lean as the SDK makes one: one action, `note`, that reads a connection
//! field (one host call) and returns it. What the invocation benchmark measures.

use junction_sdk::prelude::*;

struct Minimal;

#[derive(Deserialize, JsonSchema)]
struct Empty {}

#[derive(Serialize, JsonSchema)]
struct NoteOutput {
    note: Option<String>,
}

fn note(_: Empty) -> Result<NoteOutput> {
    Ok(NoteOutput {
        note: connection::field("note")?,
    })
}

impl Connector for Minimal {
    fn manifest() -> Manifest {
        Manifest::new("minimal", "0.1.0")
            .title("Minimal")
            .field(Field::text("note", "Note").optional())
            .auth(Auth::none("none", "No credentials"))
            .action("note", "Note", "Returns the `note` field.", note)
    }

    fn test_connection() -> Result<()> {
        Ok(())
    }
}

export_connector!(Minimal);
