"""Pins the Faust release `streams.batch_consumer` (our only use of Faust internals) was written
against, and checks every internal it touches is still there: an upgrade fails here first."""

from __future__ import annotations

import inspect
from importlib.metadata import version

import aiokafka
import faust
from faust.streams import _current_event
from faust.tables.recovery import Recovery
from faust.transport.consumer import Consumer
from faust.transport.drivers import aiokafka as faust_aiokafka

from streams import batch_consumer


def test_faust_is_the_release_the_runtime_module_was_written_against() -> None:
    assert version("faust-streaming") == batch_consumer.FAUST_VERSION == faust.__version__


def test_the_internals_used_still_exist_with_the_shapes_we_rely_on() -> None:
    assert _current_event.get(None) is None  # a ContextVar of the current event
    assert list(inspect.signature(Recovery._build_highwaters).parameters) == [
        "self", "consumer", "tps", "destination", "title"]
    assert "self._read_offset" in inspect.getsource(Consumer.__init__)  # an instance attribute
    for name in ("_drain_messages", "_add_gap", "seek_to_committed", "getmany", "ack",
                 "topic_partitions", "highwater"):
        assert hasattr(Consumer, name) or hasattr(faust_aiokafka.Consumer, name), name
    # the fetch loop: `getmany`'s own steps, taken once per partition; `ack_all`: `ack`'s bookkeeping
    assert "self.scheduler = " in inspect.getsource(Consumer.__init__)
    for name in ("_wait_next_records", "_to_message", "perform_seek", "flow_active"):
        assert hasattr(faust_aiokafka.Consumer, name), name
    getmany = inspect.getsource(Consumer.getmany)
    for step in ("await self._wait_next_records(timeout)", "self.scheduler.iterate(records)",
                 "tp in self._buffered_partitions", "track_tp_end_offset(tp, highwater_mark)",
                 "await self.perform_seek()"):
        assert step in getmany, step
    ack = inspect.getsource(Consumer.ack)
    for step in ("with ack_lock:", "committed = self._committed_offset[tp]", "acked_index.add(offset)",
                 "acked_for_tp.append(offset)", "self._n_acked += 1", "notify(self._waiting_for_ack)",
                 "self._unacked_messages.discard(message)"):
        assert step in ack, step
    assert hasattr(faust_aiokafka.AIOKafkaConsumerThread, "_create_worker_consumer")
    assert hasattr(faust_aiokafka.Producer, "_ensure_producer")
    for name in ("rebalancing", "rebalancing_count", "consumer_generation_id", "flow_control", "_new_transport"):
        assert hasattr(faust.App, name), name
    # write_table: the RocksDB store's partition databases, key index and changelog offset
    from faust.stores.rocksdb import Store

    assert "self._key_index" in inspect.getsource(Store.__init__)
    assert "self.use_rocksdict" in inspect.getsource(Store.__init__)
    assert "self._db_for_partition(tp.partition).put(self.offset_key" in inspect.getsource(Store.set_persisted_offset)
    for name in ("_db_for_partition", "apply_changelog_batch"):
        assert hasattr(Store, name), name
    # send_keyed: the aiokafka producer's own partition choice, as its `send` makes it
    assert list(inspect.signature(aiokafka.AIOKafkaProducer._partition).parameters) == [
        "self", "topic", "partition", "key", "value", "serialized_key", "serialized_value"]
    assert "await self.client._wait_on_metadata(topic)" in inspect.getsource(aiokafka.AIOKafkaProducer.send)
    assert "set_persisted_offset(res.topic_partition, res.offset)" in inspect.getsource(
        faust.tables.base.Collection._on_changelog_sent)  # what write_table does per record batch
    # mark_processing: the monitor's per-partition time a stream last took an event, which the
    # consumer thread's stall check reads (time.monotonic on both sides)
    assert "self.stream_inbound_time[tp] = monotonic()" in inspect.getsource(faust.Monitor.on_stream_event_in)
    assert "monitor.stream_inbound_time.get(tp)" in inspect.getsource(
        faust_aiokafka.AIOKafkaConsumerThread.verify_event_path)
    # write_table queues its changelog batches without yielding: the accumulator's own append
    # (what `send_batch` ends in), several batches of a partition queued in order, sent from the front
    from aiokafka.producer.message_accumulator import MessageAccumulator

    assert list(inspect.signature(MessageAccumulator._append_batch).parameters) == ["self", "builder", "tp"]
    assert "return batch" in inspect.getsource(MessageAccumulator._append_batch)
    assert "if self._closed:" in inspect.getsource(MessageAccumulator.add_batch)
    assert "if self._exception is not None:" in inspect.getsource(MessageAccumulator.add_batch)
    assert "self._batches[tp][0]" in inspect.getsource(MessageAccumulator.drain_by_nodes)
    assert "self._message_accumulator = MessageAccumulator(" in inspect.getsource(aiokafka.AIOKafkaProducer.__init__)
    assert "await self._message_accumulator.add_batch(" in inspect.getsource(aiokafka.AIOKafkaProducer.send_batch)


def test_only_the_runtime_module_imports_faust_internals() -> None:
    import pathlib

    root = pathlib.Path(batch_consumer.__file__).parent
    private = ("faust.streams import _", "faust.tables.recovery", "faust.transport")
    offenders = [str(p.relative_to(root)) for p in root.rglob("*.py") if p.name != "batch_consumer.py"
                 and any(s in p.read_text() for s in private)]
    assert offenders == []
