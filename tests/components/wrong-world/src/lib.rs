//! A valid component of another world. Junction must refuse it as "not a connector".

wit_bindgen::generate!({
    inline: "
        package other:thing;
        world calculator {
            export add: func(a: u32, b: u32) -> u32;
        }
    ",
});

struct Calculator;

impl Guest for Calculator {
    fn add(a: u32, b: u32) -> u32 {
        a.wrapping_add(b)
    }
}

export!(Calculator);
