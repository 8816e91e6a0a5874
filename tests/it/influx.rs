//! InfluxDB: a line-protocol write through the influxdb2 client, read back with InfluxQL.

use serde_json::Value;
use thingtotal_testkit::{influx_database, services};

#[tokio::test]
async fn line_protocol_written_with_influxdb2_reads_back_with_influxql() {
    let s = services();
    let (db, bucket) = influx_database("lp").await;
    let client = influxdb2::Client::new(&s.influx_url, &s.influx_org, &s.influx_token);
    let body = "greenhouse,stream_id=42,site=north\\ wing temperature=21.5,count=7i,door=true,label=\"a \\\"b\\\"\" 1700000000000000000\n\
                greenhouse,stream_id=42,site=north\\ wing temperature=22.25,count=8i,door=false,label=\"c\" 1700000001000000000\n";
    client
        .write_line_protocol(&s.influx_org, &bucket, body.to_owned())
        .await
        .expect("write accepted");
    let resp: Value = reqwest::Client::new()
        .get(format!("{}/query", s.influx_url))
        .query(&[
            ("db", db.as_str()),
            (
                "q",
                "SELECT temperature, \"count\", door, label, site FROM greenhouse ORDER BY time",
            ),
            ("epoch", "ms"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let series = &resp["results"][0]["series"][0];
    assert_eq!(series["name"], "greenhouse", "{resp}");
    assert_eq!(
        series["columns"],
        serde_json::json!(["time", "temperature", "count", "door", "label", "site"])
    );
    assert_eq!(
        series["values"],
        serde_json::json!([
            [1_700_000_000_000i64, 21.5, 7, true, "a \"b\"", "north wing"],
            [1_700_000_001_000i64, 22.25, 8, false, "c", "north wing"]
        ])
    );
}
