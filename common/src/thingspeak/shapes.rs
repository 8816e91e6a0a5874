//! The shapes of ThingSpeak's requests and answers, for the OpenAPI document. The handlers build
//! their answers as JSON values, because the members vary with the request (the fields asked
//! for, `status`, `location`); these types only describe them, member for member.

use utoipa::ToSchema;

/// A value as ThingSpeak answers it: a string (numbers included), or null.
type TsValue = Option<String>;

/// The entry `/update.json` answers: the channel id, then the entry as a feed (with its
/// `entry_id`, `latitude`, `longitude`, `elevation` and `status`).
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct ThingSpeakEntry {
    /// The channel (stream) id.
    pub channel_id: u64,
    /// The entry.
    #[serde(flatten)]
    pub entry: ThingSpeakFeed,
}

/// One feed of a read: an entry, or with `average`, `median`, `sum` or `timescale` one window
/// (without `entry_id`). Only the fields asked for are present; `latitude`, `longitude` and
/// `elevation` with `location=true`, `status` with `status=true`.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct ThingSpeakFeed {
    /// The entry's (or window's) time, in the requested time zone.
    pub created_at: String,
    /// The entry's id; absent for windows.
    #[schema(required = false)]
    pub entry_id: Option<u64>,
    /// The first field's value (`field2`..`field8` likewise).
    #[schema(required = false)]
    pub field1: TsValue,
    /// The second field.
    #[schema(required = false)]
    pub field2: TsValue,
    /// The third field.
    #[schema(required = false)]
    pub field3: TsValue,
    /// The fourth field.
    #[schema(required = false)]
    pub field4: TsValue,
    /// The fifth field.
    #[schema(required = false)]
    pub field5: TsValue,
    /// The sixth field.
    #[schema(required = false)]
    pub field6: TsValue,
    /// The seventh field.
    #[schema(required = false)]
    pub field7: TsValue,
    /// The eighth field.
    #[schema(required = false)]
    pub field8: TsValue,
    /// With `location=true`: null.
    #[schema(required = false)]
    pub latitude: TsValue,
    /// With `location=true`: null.
    #[schema(required = false)]
    pub longitude: TsValue,
    /// With `location=true`: null.
    #[schema(required = false)]
    pub elevation: TsValue,
    /// With `status=true`: null.
    #[schema(required = false)]
    pub status: TsValue,
}

/// The `channel` object of a feeds answer.
#[derive(Debug, ToSchema)]
pub struct ThingSpeakChannel {
    /// The channel (stream) id.
    pub id: u64,
    /// Its name.
    pub name: String,
    /// Its description, when it has one.
    pub description: Option<String>,
    /// The property name behind `field1` (`field2`..`field8` likewise, for the fields it has).
    pub field1: Option<String>,
    /// When the stream was created.
    pub created_at: String,
    /// When the stream last changed.
    pub updated_at: String,
    /// The newest entry's id, or null.
    pub last_entry_id: Option<u64>,
}

/// A feeds answer: the channel, and its feeds oldest first.
#[derive(Debug, ToSchema)]
pub struct ThingSpeakFeeds {
    /// The channel.
    pub channel: ThingSpeakChannel,
    /// The feeds.
    pub feeds: Vec<ThingSpeakFeed>,
}

/// `/channels/{id}.json`: the channel's settings.
#[derive(Debug, ToSchema)]
pub struct ThingSpeakChannelSettings {
    /// The channel (stream) id.
    pub id: u64,
    /// Its name.
    pub name: String,
    /// Its description, or null.
    pub description: Option<String>,
    /// Always null.
    pub metadata: Option<String>,
    /// Always null.
    pub latitude: Option<String>,
    /// Always null.
    pub longitude: Option<String>,
    /// When the stream was created.
    pub created_at: String,
    /// Always null.
    pub elevation: Option<String>,
    /// The newest entry's id, or null.
    pub last_entry_id: Option<u64>,
    /// Whether it is readable without a key.
    pub public_flag: bool,
    /// The property name behind `field1` (`field2`..`field8` likewise, for the fields it has).
    pub field1: Option<String>,
    /// Always empty.
    pub tags: Vec<String>,
}

/// `…/last_data_age.json`.
#[derive(Debug, ToSchema)]
pub struct ThingSpeakDataAge {
    /// Seconds since the newest entry, as a string.
    pub last_data_age: String,
    /// Always `s`.
    pub last_data_age_units: String,
}

/// ThingSpeak's error object.
#[derive(Debug, ToSchema)]
pub struct ThingSpeakError {
    /// The HTTP status, as a string.
    pub status: String,
    /// What went wrong.
    pub error: ThingSpeakErrorDetail,
}

/// The inside of ThingSpeak's error object.
#[derive(Debug, ToSchema)]
pub struct ThingSpeakErrorDetail {
    /// Such as `error_auth_required`.
    pub error_code: String,
    /// A short message.
    pub message: String,
    /// What to do about it.
    pub details: String,
}

/// A write, as `/update` and `/update.json` take it in the query or a form body.
#[derive(Debug, ToSchema)]
pub struct ThingSpeakUpdate {
    /// The stream's write key (or the `THINGSPEAKAPIKEY` header).
    pub api_key: Option<String>,
    /// The first field's value (`field2`..`field8` likewise), converted to its property's type.
    pub field1: Option<String>,
    /// The second field.
    pub field2: Option<String>,
    /// The third field.
    pub field3: Option<String>,
    /// The fourth field.
    pub field4: Option<String>,
    /// The fifth field.
    pub field5: Option<String>,
    /// The sixth field.
    pub field6: Option<String>,
    /// The seventh field.
    pub field7: Option<String>,
    /// The eighth field.
    pub field8: Option<String>,
    /// Kept if the schema has a `lat` or `latitude` property.
    pub lat: Option<String>,
    /// Kept if the schema has a `long` or `longitude` property.
    pub long: Option<String>,
    /// Kept if the schema has an `elevation` property.
    pub elevation: Option<String>,
    /// Kept if the schema has a `status` property.
    pub status: Option<String>,
    /// The reading's time (ISO 8601; UTC if no zone).
    pub created_at: Option<String>,
}

/// One update of a bulk write: `created_at` or `delta_t`, and the fields.
#[derive(Debug, ToSchema)]
pub struct ThingSpeakBulkEntry {
    /// The reading's time.
    pub created_at: Option<String>,
    /// Seconds after the update before it.
    pub delta_t: Option<f64>,
    /// The first field's value, a string or a number (`field2`..`field8` likewise).
    #[schema(schema_with = string_or_number)]
    pub field1: Option<serde_json::Value>,
    /// `lat`, `long`, `elevation` and `status` as in `/update`.
    pub status: Option<String>,
}

/// A string or a number: how bulk updates may send a field's value.
fn string_or_number() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
    Schema::OneOf(
        OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::String))
            .item(ObjectBuilder::new().schema_type(Type::Number))
            .item(ObjectBuilder::new().schema_type(Type::Null))
            .build(),
    )
}

/// A bulk write: `POST /channels/{id}/bulk_update.json`.
#[derive(Debug, ToSchema)]
pub struct ThingSpeakBulkUpdate {
    /// The stream's write key.
    pub write_api_key: String,
    /// The updates, in time order.
    pub updates: Vec<ThingSpeakBulkEntry>,
}

/// A bulk write's answer.
#[derive(Debug, ToSchema)]
pub struct ThingSpeakSuccess {
    /// Always true.
    pub success: bool,
}
