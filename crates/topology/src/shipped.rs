//! The four curriculum designs, and `ha` beyond them, that ship inside the binary,
//! selectable by name.

/// Name and TOML source of every shipped design, in curriculum order.
pub const SHIPPED: &[(&str, &str)] = &[
    ("simple", include_str!("../../../designs/simple.toml")),
    (
        "distributed",
        include_str!("../../../designs/distributed.toml"),
    ),
    ("secured", include_str!("../../../designs/secured.toml")),
    ("scaled", include_str!("../../../designs/scaled.toml")),
    ("ha", include_str!("../../../designs/ha.toml")),
];

/// The design `webstack up` runs when none is named.
pub const DEFAULT_DESIGN: &str = "scaled";

pub fn shipped_names() -> Vec<&'static str> {
    SHIPPED.iter().map(|(name, _)| *name).collect()
}

pub fn shipped_source(name: &str) -> Option<&'static str> {
    SHIPPED
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, src)| *src)
}
