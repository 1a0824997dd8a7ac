"""Test session setup: MindSpore in graph mode on CPU, as users run it."""

import mindspore as ms

ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
