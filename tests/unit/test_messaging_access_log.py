"""A service's consumer process writes FastStream's per-batch access lines at DEBUG: below the
services' INFO, so a batch costs no log lines; its failures are logged still."""

from __future__ import annotations

import logging

from referrals_common.messaging.consumer import consumer_broker


def test_a_consumers_received_and_processed_lines_are_below_info() -> None:
    broker = consumer_broker("localhost:9092", "records")
    assert broker.config.logger.log_level < logging.INFO
