"""Linear-chain conditional random field (CRF) for sequence tagging (BERT NER).

    CRF.neg_log_likelihood  training loss: mean over the batch of log Z - gold-path score
    CRF.decode              Viterbi: best tag path and its score, backtracked in the graph
    CRF.construct           the same as `neg_log_likelihood`

A tag path y_1..y_L of a sequence with L real tokens scores

    start[y_1] + sum_{t=1..L} emissions[t, y_t] + sum_{t=2..L} transitions[y_{t-1}, y_t] + end[y_L],

and the CRF's probability of the path is exp(score) / Z, where Z sums exp(score)
over all T^L paths. Positions after L (padding) take part in nothing: not in
the gold score, not in Z, not in the decoded path (they decode as tag 0). The
MindSpore model zoo's CRF scores the padding as if it were text; this one does
not, so the loss and the decoded tags do not depend on how much a sequence is
padded.

Loops over the sequence. The forward algorithm and Viterbi each run S - 1
steps, and Viterbi's backtracking S - 1 more. Each loop is written once; its
counter decides how graph mode compiles it (`src.kernel_forms` picks per
device target). A tensor counter (CPU) compiles one loop body, a `while` loop
in the graph: fast to compile, no faster to run when unrolled on CPU (README.md,
"Performance"). A Python int counter (Ascend, GPU) makes graph mode unroll the
loop into S - 1 copies of its body, as the model zoo's CRF does: a device then
runs one graph instead of jumping between subgraphs at every token, at the
price of a longer compile. (`ops.ForiLoop` with a tuple carry failed to
compile in MindSpore 2.10.) PYNATIVE mode gives the same results but
dispatches every step's ops one by one, so train in GRAPH mode.

The decoder, backtracking included, exports to MINDIR and runs from it
(`ms.export`, then `nn.GraphCell(ms.load(...))`).

Shape letters: B batch, S sequence length, T number of tags.
"""

import mindspore as ms
from mindspore import nn, ops

from src.kernel_forms import KernelForms, kernel_forms


class CRF(nn.Cell):
    """Linear-chain CRF over `num_tags` tags, with padding masked out.

    All three score tables start at zero. A CRF has no hidden units whose
    symmetry random values would have to break: the gradient of the loss with
    respect to each table is (expected - gold) transition counts, non-zero from
    the first step. Zeros make the untrained CRF a per-token softmax over the
    emissions and make the start independent of the random seed.

    The mask must be a prefix of ones followed by zeros with at least one real
    token (position 0 holds [CLS] in BERT); this is assumed, not checked, in
    the graph. Tags and emissions at padded positions are ignored and may hold
    anything: tag -1, an out-of-range tag, inf or NaN scores.

    Args:
        num_tags (int): number of tags T.
        forms (KernelForms): how the loops compile; None: the forms of
            MindSpore's current device target.

    Parameters (checkpoint names under the owning Cell's prefix):
        transitions: float32 [T, T], score of tag i followed by tag j.
        start_transitions: float32 [T], score of starting with tag j.
        end_transitions: float32 [T], score of ending with tag i.

    Inputs (`construct`, the same as `neg_log_likelihood`):
        emissions: float32 [B, S, T], per-token tag scores (other float dtypes are cast).
        tags: int32 [B, S], gold tags.
        mask: int32 [B, S], 1 for real tokens, 0 for padding.
    Outputs:
        float32 scalar, the mean negative log-likelihood of the gold paths.
    """

    def __init__(self, num_tags: int, forms: KernelForms | None = None):
        super().__init__()
        if not isinstance(num_tags, int) or isinstance(num_tags, bool) or num_tags < 1:
            raise ValueError(f"num_tags must be a positive int, got {num_tags!r}")
        self.num_tags = num_tags
        self.while_loops = (forms or kernel_forms()).crf_while_loops
        self.transitions = ms.Parameter(ops.zeros((num_tags, num_tags), ms.float32), name="transitions")
        self.start_transitions = ms.Parameter(ops.zeros(num_tags, ms.float32), name="start_transitions")
        self.end_transitions = ms.Parameter(ops.zeros(num_tags, ms.float32), name="end_transitions")

    def construct(self, emissions: ms.Tensor, tags: ms.Tensor, mask: ms.Tensor) -> ms.Tensor:
        return self.neg_log_likelihood(emissions, tags, mask)

    def loop_counter(self, start: int) -> ms.Tensor | int:
        """A sequence loop's counter, starting at `start`: a tensor keeps the loop one
        graph loop, a Python int makes graph mode unroll it (see the module docstring)."""
        return ms.Tensor(start, ms.int32) if self.while_loops else start

    def neg_log_likelihood(self, emissions: ms.Tensor, tags: ms.Tensor, mask: ms.Tensor) -> ms.Tensor:
        """Mean over the batch of log Z - score(gold path).

        Inputs:
            emissions: float32 [B, S, T].
            tags: int32 [B, S].
            mask: int32 [B, S].
        Outputs:
            float32 scalar.
        """
        emissions = emissions.astype(ms.float32)
        return (self.log_partition(emissions, mask) - self.path_score(emissions, tags, mask)).mean()

    def path_score(self, emissions: ms.Tensor, tags: ms.Tensor, mask: ms.Tensor) -> ms.Tensor:
        """Score of the given tag paths, padding excluded.

        Inputs:
            emissions: float32 [B, S, T].
            tags: int32 [B, S].
            mask: int32 [B, S].
        Outputs:
            float32 [B].
        """
        is_real = mask > 0                                                               # [B, S]
        # Padded tags become 0, a valid index; their scores are then replaced by 0
        # (with `where`, not a product, so inf or NaN padding cannot leak in).
        tags = tags * mask                                                               # [B, S]
        emission_scores = ops.gather_elements(emissions, 2, tags.expand_dims(2)).squeeze(2)  # [B, S]
        emission_scores = ops.where(is_real, emission_scores, 0.0)                       # [B, S]
        # Row-major index of (previous tag, tag) in the flattened [T * T] table.
        pair_index = tags[:, :-1] * self.num_tags + tags[:, 1:]                          # [B, S - 1]
        transition_scores = ops.gather(self.transitions.reshape(-1), pair_index, 0)      # [B, S - 1]
        transition_scores = ops.where(is_real[:, 1:], transition_scores, 0.0)            # [B, S - 1]
        lengths = mask.sum(1).astype(ms.int32)                                           # [B]
        last_tags = ops.gather_elements(tags, 1, (lengths - 1).expand_dims(1)).squeeze(1)  # [B]
        return (ops.gather(self.start_transitions, tags[:, 0], 0)
                + emission_scores.sum(1)
                + transition_scores.sum(1)
                + ops.gather(self.end_transitions, last_tags, 0))

    def log_partition(self, emissions: ms.Tensor, mask: ms.Tensor) -> ms.Tensor:
        """log Z of each sequence (forward algorithm in log space).

        alpha[b, j] is the log-sum-exp of the scores of all paths through the
        tokens so far that end in tag j. At a padded position alpha is carried
        over unchanged, so after the loop it holds each sequence's value at its
        last real token, where the end scores are added.

        Inputs:
            emissions: float32 [B, S, T].
            mask: int32 [B, S].
        Outputs:
            float32 [B].
        """
        seq_length = emissions.shape[1]
        emissions = emissions.swapaxes(0, 1)                                             # [S, B, T]
        # A float mask: the gradient of indexing a bool tensor in the loop is not defined.
        is_real = mask.swapaxes(0, 1).astype(ms.float32).expand_dims(2)                  # [S, B, 1]
        alpha = self.start_transitions + emissions[0]                                    # [B, T]
        t = self.loop_counter(1)
        while t < seq_length:
            # scores[b, i, j]: all paths so far ending in tag i, then the step i -> j.
            scores = alpha.expand_dims(2) + self.transitions                             # [B, T, T]
            next_alpha = ops.logsumexp(scores, 1) + emissions[t]                         # [B, T]
            alpha = ops.where(is_real[t] > 0, next_alpha, alpha)                         # [B, T]
            t = t + 1
        return ops.logsumexp(alpha + self.end_transitions, 1)                            # [B]

    def decode(self, emissions: ms.Tensor, mask: ms.Tensor) -> tuple[ms.Tensor, ms.Tensor]:
        """Viterbi decoding: the highest-scoring tag path of each sequence.

        Backtracking runs in the graph (a second loop), so the decoder
        can be exported with the rest of the network.

        Inputs:
            emissions: float32 [B, S, T].
            mask: int32 [B, S].
        Outputs:
            best_tags: int32 [B, S], 0 at padded positions.
            best_score: float32 [B], the score of that path.
        """
        emissions = emissions.astype(ms.float32)
        batch_size, seq_length, num_tags = emissions.shape
        emissions = emissions.swapaxes(0, 1)                                             # [S, B, T]
        is_real = mask.swapaxes(0, 1).expand_dims(2) > 0                                 # [S, B, 1]
        # Backpointer of a padded position: each tag points to itself, so that
        # backtracking walks through the padding unchanged to the last real token.
        stay = ops.broadcast_to(ops.arange(num_tags, dtype=ms.int32), (batch_size, num_tags))  # [B, T]
        backpointers = ops.zeros((seq_length, batch_size, num_tags), ms.int32)           # [S, B, T]
        score = self.start_transitions + emissions[0]                                    # [B, T]
        t = self.loop_counter(1)
        while t < seq_length:
            # scores[b, i, j]: the best path so far ending in tag i, then the step i -> j.
            scores = score.expand_dims(2) + self.transitions                             # [B, T, T]
            best_previous = ops.argmax(scores, 1).astype(ms.int32)                       # [B, T]
            next_score = ops.amax(scores, 1) + emissions[t]                              # [B, T]
            real = is_real[t]                                                            # [B, 1]
            score = ops.where(real, next_score, score)                                   # [B, T]
            backpointers[t] = ops.where(real, best_previous, stay)
            t = t + 1
        score = score + self.end_transitions                                             # [B, T]
        best_score = ops.amax(score, 1)                                                  # [B]
        tag = ops.argmax(score, 1).astype(ms.int32)                                      # [B]
        best_tags = ops.zeros((seq_length, batch_size), ms.int32)                        # [S, B]
        best_tags[seq_length - 1] = tag
        t = self.loop_counter(seq_length - 1)
        while t > 0:
            pointers = backpointers[t]                                                   # [B, T]
            tag = ops.gather_elements(pointers, 1, tag.expand_dims(1)).squeeze(1)        # [B]
            best_tags[t - 1] = tag
            t = t - 1
        return best_tags.swapaxes(0, 1) * mask, best_score                               # [B, S], [B]
