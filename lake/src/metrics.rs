//! The lake's metrics, as collectors on the server's Prometheus registry:
//! read from the shipper's and the maintainer's counters on each scrape.

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::maintain::Maintainer;
use crate::shipper::Shipper;
use crate::source::ChangeSource;

/// A counter (exposed as `<name>_total`).
pub(crate) fn counter(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    let counter = ConstCounter::new(value);
    counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)
}

/// A gauge.
pub(crate) fn gauge<N: EncodeGaugeValue + fmt::Debug + Send + Sync>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: N,
) -> fmt::Result {
    ConstGauge::new(value).encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

/// A gauge with one value per label set.
pub(crate) fn gauges<L: EncodeLabelSet, N: EncodeGaugeValue + fmt::Debug + Send + Sync>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: impl IntoIterator<Item = (L, N)>,
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in values {
        ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// The shipper's counters and each tenant's lag.
pub struct ShipperMetrics<S: ChangeSource>(pub Arc<Shipper<S>>);

impl<S: ChangeSource> fmt::Debug for ShipperMetrics<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ShipperMetrics")
    }
}

impl<S: ChangeSource> Collector for ShipperMetrics<S> {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        self.0.encode_metrics(&mut encoder)
    }
}

/// Maintenance's counters and each table's files, snapshots and metadata.
pub struct MaintainerMetrics(pub Arc<Maintainer>);

impl fmt::Debug for MaintainerMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MaintainerMetrics")
    }
}

impl Collector for MaintainerMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        self.0.encode_metrics(&mut encoder)
    }
}
