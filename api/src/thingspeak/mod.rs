//! ThingSpeak's read API, so that existing clients read a stream as a channel by changing the
//! host: `/channels/{id}/feeds.json|csv`, `/fields/{n}.json|csv`, `/feeds/last.json`,
//! `/fields/{n}/last.json|txt`, `…/last_data_age.json` and `/channels/{id}.json`.
//!
//! It follows ThingSpeak's documented parameters and answers, quirks included: field values are
//! strings; `entry_id` is the entry's `seq`; `created_at` has whole seconds (`…Z`, or the offset
//! of `timezone`), and CSV writes it as `YYYY-MM-DD HH:MM:SS UTC`; the newest `results` entries
//! (100 by default, at most 8000) come back oldest first; a private channel read without its
//! key is a `400` with the body `-1`, and a `last` read of an empty channel is `-1`.
//! `field1..8` are the stream's `fields` (by default its first eight properties).
//!
//! Where ThingSpeak silently ignores a value it cannot use, this answers `400` with ThingSpeak's
//! error object instead: a bad `timezone`, date, window or number is a mistake worth seeing.

mod access;
pub(crate) mod doc;
mod endpoints;
mod error;
mod feeds;
mod params;
mod render;
mod routes;
mod zone;

pub(crate) use routes::routes;
