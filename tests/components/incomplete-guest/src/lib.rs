//! Claims the supported interface version but exports only a `manifest` of the wrong type
//! and none of the other functions. Loading must name what is missing.

wit_bindgen::generate!({
    inline: "
        package junction:connector@0.1.0;
        interface guest {
            manifest: func() -> string;
        }
        world connector {
            export guest;
        }
    ",
});

struct Incomplete;

impl exports::junction::connector::guest::Guest for Incomplete {
    fn manifest() -> String {
        "not a manifest".into()
    }
}

export!(Incomplete);
