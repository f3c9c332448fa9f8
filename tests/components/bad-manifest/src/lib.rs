//! A connector whose manifest breaks several rules at once; loading it must fail with all
//! of them named.

use junction_sdk::prelude::*;

struct Bad;

#[derive(Deserialize, JsonSchema)]
struct In {}

fn nothing(_: In) -> Result<Value> {
    Ok(Value::Null)
}

impl Connector for Bad {
    fn manifest() -> Manifest {
        Manifest::new("Bad Name", "first")
            .title("Bad")
            .field(Field::text("token", "Token, but not secret"))
            .auth(Auth::bearer("pat", "Token", "token"))
            .allowed_host("{nowhere}.example.com")
            .action("same", "One", "", nothing)
            .action("same", "Two", "", nothing)
    }
    fn test_connection() -> Result<()> {
        Ok(())
    }
}

export_connector!(Bad);
