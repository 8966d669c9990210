"""Plots every schedule in nagd_optax.schedules, and scale_on_plateau.

Writes runs/plot_schedules/schedules.png (a git-ignored run directory);
``--write-results`` regenerates the committed docs/_static/schedules.png.
Takes a few seconds (the plateau run is one jitted scan).

Run:  python docs/scripts/plot_schedules.py [--write-results]
"""

import argparse
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import jax
import jax.numpy as jnp
import numpy as np
import optax

import nagd_optax as nagd

ROOT = pathlib.Path(__file__).parents[2]
COMMITTED = ROOT / "docs" / "_static" / "schedules.png"
RUN = ROOT / "runs" / "plot_schedules" / "schedules.png"
S = nagd.schedules


def panels():
  """(title, formula, {label: schedule}, steps) for each panel."""
  cosine = optax.cosine_decay_schedule(1.0, decay_steps=900)
  return [
      ("warmup", "warmup(schedule, 100): ramp to schedule(0), then schedule",
       {"linear, to 1.0": S.warmup(1.0, 100),
        "cosine, to 1.0": S.warmup(1.0, 100, kind="cosine"),
        "linear, to a cosine decay": S.warmup(cosine, 100)}, 300),
      ("wsd", "wsd(1.0, 100, 700, 200, decay=...)",
       {d: S.wsd(1.0, 100, 700, 200, decay=d)
        for d in ("linear", "cosine", "sqrt")}, 1000),
      ("inverse_sqrt", "inverse_sqrt(1.0, W): peak * sqrt(W / k) after W",
       {f"W = {w}": S.inverse_sqrt(1.0, w) for w in (50, 200)}, 1000),
      ("step_decay", "step_decay(1.0, factor, every=200)",
       {f"factor {f}": S.step_decay(1.0, f, 200) for f in (0.5, 0.1)}, 1000),
      ("momentum", "momentum schedules",
       {"nesterov_momentum(): k/(k+3)": S.nesterov_momentum(),
        "fista_momentum(): (t_k - 1)/t_{k+1}": S.fista_momentum(),
        "sutskever_momentum(0.99, 250)": S.sutskever_momentum(0.99, 250),
        "strongly_convex_momentum(1e4)": S.strongly_convex_momentum(1e4)},
       2000),
  ]


def plateau_panel(axis):
  """scale_on_plateau on a noisy loss that falls, then stalls."""
  k = np.arange(3000)
  loss = np.maximum(10.0 - 0.005 * k, 4.0)
  loss = loss + 0.3 * np.random.default_rng(0).standard_normal(k.size)
  optimizer = nagd.scale_on_plateau(0.5, patience=50, loss_smoothing=0.98)
  params = jnp.zeros(1)

  def step(state, value):
    _, state = optimizer.update(params, state, value=value)
    return state, state.scale

  _, scales = jax.jit(lambda values: jax.lax.scan(
      step, optimizer.init(params), values))(jnp.asarray(loss))
  axis.plot(k, loss, color="0.7", lw=0.5, label="loss (noise std 0.3)")
  axis.set_xlabel("step")
  axis.set_ylabel("loss")
  twin = axis.twinx()
  twin.plot(k, scales, color="C3", label="scale")
  twin.set_ylabel("scale")
  axis.set_title("scale_on_plateau(0.5, patience=50, loss_smoothing=0.98)\n"
                 "keeps the scale while the noisy loss falls, lowers it once"
                 " it stalls", fontsize=9)
  axis.legend(loc="upper right", fontsize=8)
  twin.legend(loc="center right", fontsize=8)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--write-results", action="store_true",
                      help=f"write {COMMITTED.relative_to(ROOT)} (committed)")
  args = parser.parse_args(argv)
  output = COMMITTED if args.write_results else RUN
  figure, axes = plt.subplots(2, 3, figsize=(16, 8))
  axes = axes.ravel()
  for axis, (title, formula, schedules, steps) in zip(axes, panels()):
    counts = np.arange(steps)
    for label, schedule in schedules.items():
      axis.plot(counts, np.asarray(schedule(counts)), label=label)
    axis.set_title(f"{title}\n{formula}", fontsize=9)
    axis.set_xlabel("step")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
  plateau_panel(axes[-1])
  figure.tight_layout()
  output.parent.mkdir(parents=True, exist_ok=True)
  figure.savefig(output, dpi=100)
  print(f"wrote {output}")
  return output


if __name__ == "__main__":
  main()
