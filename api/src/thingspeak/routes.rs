//! ThingSpeak's read routes, matched by hand from the path segments after `/channels/`.

use thingtotal_common::http::{self, Credential};
use thingtotal_common::stream::StreamId;
use warp::filters::BoxedFilter;
use warp::http::Method;
use warp::reply::Response;
use warp::Filter;

use super::endpoints::{describe, feeds, last, last_data_age};
use super::error::TsError;
use crate::{measured, Api};

/// The format a ThingSpeak request names after `/channels/{id}/`: its path's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    /// `.json`.
    Json,
    /// `.csv`.
    Csv,
    /// `.txt`, or no extension.
    Txt,
}

/// The format of an extension.
fn format_of(ext: &str) -> Option<Format> {
    match ext {
        "json" => Some(Format::Json),
        "csv" => Some(Format::Csv),
        "txt" | "" => Some(Format::Txt),
        _ => None,
    }
}

/// The endpoint's answer, or its failure's.
async fn answer(r: Result<Response, TsError>) -> Response {
    r.unwrap_or_else(TsError::reply)
}

/// The path segment `name.ext` (or `name`), split.
fn split_ext(seg: &str) -> (&str, &str) {
    seg.rsplit_once('.').unwrap_or((seg, ""))
}

/// ThingSpeak's read routes. Path segments carry the format (`feeds.json`), so they are
/// matched by hand after `/channels/`.
pub(crate) fn routes(
    state: impl Filter<Extract = (Api,), Error = std::convert::Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
) -> BoxedFilter<(Response,)> {
    let query = || warp::query::raw().or(warp::any().map(String::new)).unify();
    // The path is matched before the method, so that a path no read serves (a bulk update's,
    // say) is left to the other routes whatever its method.
    let route = warp::path("channels")
        .and(warp::path::tail())
        .and_then(|tail: warp::path::Tail| async move {
            let segs: Vec<&str> = tail.as_str().split('/').collect();
            dispatch(&segs).ok_or_else(warp::reject::not_found)
        })
        .and(warp::method())
        .and_then(|route: Route, method: Method| async move {
            if method == Method::GET {
                Ok(route)
            } else {
                Err(http::WrongMethod::only("GET"))
            }
        });
    route
        .and(state)
        .and(http::credential())
        .and(query())
        .then(
            |route: Route, api: Api, c: Credential, q: String| async move {
                match route {
                    Route::Describe(id) => {
                        measured("thingspeak_channel", async {
                            answer(describe(api, id, c, &q).await).await
                        })
                        .await
                    }
                    Route::Feeds(id, field, f) => {
                        measured("thingspeak_feeds", async {
                            answer(feeds(api, id, field, f, c, &q).await).await
                        })
                        .await
                    }
                    Route::Last(id, field, f) => {
                        measured("thingspeak_last", async {
                            answer(last(api, id, field, f, c, &q).await).await
                        })
                        .await
                    }
                    Route::Age(id, field) => {
                        measured("thingspeak_last_data_age", async {
                            answer(last_data_age(api, id, field, c).await).await
                        })
                        .await
                    }
                }
            },
        )
        .boxed()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Describe(StreamId),
    Feeds(StreamId, Option<u8>, Format),
    Last(StreamId, Option<u8>, Format),
    Age(StreamId, Option<u8>),
}

fn dispatch(segs: &[&str]) -> Option<Route> {
    let field = |s: &str| s.parse::<u8>().ok();
    match segs {
        [one] => {
            let (id, ext) = split_ext(one);
            (ext == "json").then_some(Route::Describe(id.parse().ok()?))
        }
        [id, rest @ ..] => {
            let id: StreamId = id.parse().ok()?;
            match rest {
                [feeds] => {
                    let (name, ext) = split_ext(feeds);
                    let f = format_of(ext).filter(|f| *f != Format::Txt)?;
                    matches!(name, "feeds" | "feed").then_some(Route::Feeds(id, None, f))
                }
                ["feeds" | "feed", last] => match split_ext(last) {
                    ("last", ext) => Some(Route::Last(id, None, format_of(ext)?)),
                    ("last_data_age", "json") => Some(Route::Age(id, None)),
                    _ => None,
                },
                ["fields" | "field", n] => {
                    let (n, ext) = split_ext(n);
                    let f = format_of(ext).filter(|f| *f != Format::Txt)?;
                    Some(Route::Feeds(id, Some(field(n)?), f))
                }
                ["fields" | "field", n, last] => match split_ext(last) {
                    ("last", ext) => Some(Route::Last(id, Some(field(n)?), format_of(ext)?)),
                    ("last_data_age", "json") => Some(Route::Age(id, Some(field(n)?))),
                    _ => None,
                },
                _ => None,
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_the_endpoint_and_format() {
        let d = |p: &str| dispatch(&p.split('/').collect::<Vec<_>>());
        assert_eq!(d("9.json"), Some(Route::Describe(9)));
        assert_eq!(d("9/feeds.json"), Some(Route::Feeds(9, None, Format::Json)));
        assert_eq!(d("9/feed.csv"), Some(Route::Feeds(9, None, Format::Csv)));
        assert_eq!(
            d("9/fields/2.csv"),
            Some(Route::Feeds(9, Some(2), Format::Csv))
        );
        assert_eq!(
            d("9/feeds/last.json"),
            Some(Route::Last(9, None, Format::Json))
        );
        assert_eq!(
            d("9/fields/1/last"),
            Some(Route::Last(9, Some(1), Format::Txt))
        );
        assert_eq!(
            d("9/fields/1/last.txt"),
            Some(Route::Last(9, Some(1), Format::Txt))
        );
        assert_eq!(
            d("9/fields/3/last_data_age.json"),
            Some(Route::Age(9, Some(3)))
        );
        assert_eq!(d("9/feeds/last_data_age.json"), Some(Route::Age(9, None)));
        for bad in [
            "9",
            "x.json",
            "9/feeds",
            "9/feeds.xml",
            "9/fields/x.json",
            "9/fields/1/first.json",
        ] {
            assert_eq!(d(bad), None, "{bad}");
        }
    }
}
