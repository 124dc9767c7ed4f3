//! An app's `GET /metrics`, read series by series.

/// The Prometheus text exposition of one app.
pub struct MetricsText(pub String);

impl MetricsText {
    /// The value of the series named `name` with exactly these labels, in any order.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut wanted: Vec<(String, String)> =
            labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        wanted.sort();
        self.series(name).find(|(found, _)| *found == wanted).map(|(_, value)| value)
    }

    /// The sum over every series of `name`, whatever its labels.
    pub fn total(&self, name: &str) -> f64 {
        self.series(name).map(|(_, value)| value).sum()
    }

    /// Every series of `name` as (sorted labels, value).
    fn series<'a>(&'a self, name: &'a str) -> impl Iterator<Item = (Vec<(String, String)>, f64)> + 'a {
        self.0.lines().filter(|line| !line.starts_with('#')).filter_map(move |line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (found, labels) = match series.split_once('{') {
                Some((found, rest)) => (found, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            (found == name).then(|| (parse_labels(labels), value.parse().unwrap()))
        })
    }
}

impl std::fmt::Display for MetricsText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// `a="x",b="y"` as sorted pairs (our label values hold no quotes or commas).
fn parse_labels(text: &str) -> Vec<(String, String)> {
    let mut labels: Vec<(String, String)> = text
        .split(',')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap();
            (key.to_owned(), value.trim_matches('"').to_owned())
        })
        .collect();
    labels.sort();
    labels
}
