//! `cmkctl console`: the ops console, a local web page over the same library as the CLI (selection, actions, audit,
//! counts, diagnosis, events): nothing here walks, replays or purges on its own.
//!
//! Who can use it: it listens on a loopback address only, and acts with the operator's own credential (the one the
//! CLI would use). Other local pages and sites must not drive it:
//! - a per-run secret token: the URL printed at start carries it once; the page swaps it for an `HttpOnly`,
//!   `SameSite=Strict` cookie, and every request must present that cookie;
//! - mutating requests must also carry the token in the `x-cmkctl-token` header (a cross-site form cannot set a
//!   header, and a cross-site `fetch` with it needs a CORS preflight nobody answers), JSON content, and, when the
//!   browser sends them, `Origin` equal to the console's own origin and `Sec-Fetch-Site: same-origin`;
//! - DNS rebinding: the `Host` header must be the address the console listens on (`127.0.0.1:PORT` or
//!   `localhost:PORT`), so a page from `evil.example` resolved to 127.0.0.1 is refused;
//! - the page allows no framing and loads scripts only from itself (Content-Security-Policy).

mod server;

pub use server::{Console, ConsoleOptions, start};
