"""The recurrent layers, gathered: ``SimpleRNN`` (:mod:`.simple_rnn`) and ``LSTM`` (:mod:`.lstm`),
with their pure forward/backward functions; what they share is in :mod:`.recurrent_base`.

Kept so that ``from npdl.layers.recurrent import ...`` goes on working; new code can import from
:mod:`npdl.layers` or from the modules above.
"""

from .lstm import (LSTM, lstm_backward, lstm_backward_sequence, lstm_backward_step, lstm_forward,
                   lstm_forward_sequence, lstm_forward_step, lstm_products)
from .recurrent_base import weight_products
from .simple_rnn import (RNN_ACTIVATIONS, SimpleRNN, simple_rnn_backward, simple_rnn_backward_sequence,
                         simple_rnn_forward, simple_rnn_forward_sequence, simple_rnn_products)

__all__ = ["LSTM", "RNN_ACTIVATIONS", "SimpleRNN", "lstm_backward", "lstm_backward_sequence", "lstm_backward_step",
           "lstm_forward", "lstm_forward_sequence", "lstm_forward_step", "lstm_products", "simple_rnn_backward",
           "simple_rnn_backward_sequence", "simple_rnn_forward", "simple_rnn_forward_sequence", "simple_rnn_products",
           "weight_products"]
