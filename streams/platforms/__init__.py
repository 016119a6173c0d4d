"""Shop platforms in, touchpoints out: Shopify, Square, WooCommerce webhooks and Segment-spec calls.

Each module maps one platform's payloads to touchpoints in the design's JSON form, as pure
functions (no HTTP, no Kafka); `streams.platforms.routes` puts them behind the collector.
"""
