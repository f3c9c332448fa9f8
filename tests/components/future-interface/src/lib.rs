//! Exports `junction:connector/guest@9.0.0`, a version no host supports yet.

wit_bindgen::generate!({
    inline: "
        package junction:connector@9.0.0;
        interface guest {
            manifest: func() -> string;
        }
        world connector {
            export guest;
        }
    ",
});

struct Future;

impl exports::junction::connector::guest::Guest for Future {
    fn manifest() -> String {
        "from the future".into()
    }
}

export!(Future);
