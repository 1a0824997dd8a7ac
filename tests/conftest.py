"""Test session setup: MindSpore in graph mode on CPU, as users run it."""

import mindspore as ms

# set_device (not set_context's deprecated device_target) so that jobs run in-process may set it again.
ms.set_device("CPU")
ms.set_context(mode=ms.GRAPH_MODE)
