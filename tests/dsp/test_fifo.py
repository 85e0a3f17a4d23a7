"""SampleFifo: samples come out in order, in any counts, whatever sizes went in."""

import numpy as np

from melganvc.dsp.fifo import SampleFifo


def test_samples_come_out_in_order_in_any_counts():
    fifo, data = SampleFifo(), np.arange(100, dtype=np.float32)
    for start, stop in ((0, 7), (7, 7), (7, 60), (60, 100)):
        fifo.put(data[start:stop])
    assert fifo.size == 100
    got = [fifo.take(n) for n in (3, 0, -5, 50, 1000)]
    assert [g.size for g in got] == [3, 0, 0, 50, 47] and fifo.size == 0
    np.testing.assert_array_equal(np.concatenate(got), data)
    assert fifo.take(4).size == 0 and fifo.take(4).dtype == np.float32
