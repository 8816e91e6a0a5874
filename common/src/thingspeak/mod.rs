//! ThingSpeak's dialect, shared by the write side (ingest) and the read side (api): its error
//! object and error codes, the `field1`..`field8` mapping onto a stream's properties, and the
//! shapes of its requests and answers for the OpenAPI document.

pub mod error;
pub mod fields;
pub mod shapes;

pub use error::ErrorCode;
pub use fields::{channel_fields, field_key, MAX_FIELDS};
pub use shapes::{
    ThingSpeakBulkEntry, ThingSpeakBulkUpdate, ThingSpeakChannel, ThingSpeakChannelSettings,
    ThingSpeakDataAge, ThingSpeakEntry, ThingSpeakError, ThingSpeakErrorDetail, ThingSpeakFeed,
    ThingSpeakFeeds, ThingSpeakSuccess, ThingSpeakUpdate,
};
