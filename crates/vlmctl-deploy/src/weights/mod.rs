//! The weights jobs, so that every front-end (the CLI, the service) runs the same ones and only
//! renders them: [`fetch`] the locked files from the hub, [`verify`] them where they are,
//! [`adopt`] files copied by hand, [`update`] the entries that track a branch or tag, [`push`]
//! them onto another host; and pin-on-first-use ([`pinned_plan`]): a spec whose `[model]` the
//! lock does not pin yet is resolved against the hub and written into the lock before the job
//! that needs its files goes on.
//!
//! Each job reports through the job's [`Sink`](crate::events::Sink) ([`Event`] as it goes) and
//! returns what it did; the decisions in between ("new commit, N file(s) changed", which host
//! folder each file goes to, which staging folders a push keeps) are pure functions here.
//!
//! [`Event`]: crate::events::Event

mod adopt;
mod fetch;
mod pinned;
mod push;
mod update;
mod verify;

pub use adopt::{Adopted, adopt};
pub use fetch::{Fetched, fetch};
pub use pinned::pinned_plan;
pub use push::{PushRequest, by_dir, keep_set, push};
pub use update::{UpdateResult, UpdateRow, Updated, classify, resolve, update};
pub use verify::verify;
