"""Experiment 5: the prior pulls the estimate (diabetes, a ridge path as a prior sweep).

A Normal(0, τ) prior on the weights of a Gaussian linear model (σ fixed, intercept flat) has
an exact Gaussian posterior,

.. math:: \\beta \\mid y \\sim N\\big(A^{-1} X^\\top y / \\sigma^2,\\; A^{-1}\\big),
          \\qquad A = X^\\top X / \\sigma^2 + I / \\tau^2

(X centred), whose mean is the MAP: Ridge with alpha = σ²/τ². As τ grows the MAP tends to the
MLE (least squares); as τ shrinks, to the prior mean 0. The MAPs come from one batched
``mm.fit`` over all τ (the prior scale is an argument of the compiled program); the posterior
is the closed form, and ``mm.laplace`` reproduces it (exact for a Gaussian posterior).
"""

from __future__ import annotations

import json

import numpy as np

from lesson._common import diabetes, rel_error

SIGMA = 50.0
TAU_RANGE = (-2.0, 3.0)  # log10
FOCUS = "bmi"


def run(ctx):
    import matplotlib.pyplot as plt
    from sklearn.linear_model import LinearRegression, Ridge

    import mlemap as mm

    X, y, names = diabetes()
    n, d = X.shape
    taus = np.logspace(*TAU_RANGE, ctx.size(41, 21))
    model, data = mm.glm(X, y, family=mm.families.gaussian(sigma=SIGMA),
                         prior=mm.priors.from_ridge(1.0, sigma=SIGMA))
    path = mm.fit(model, data, priors={"beta": mm.priors.from_ridge(SIGMA**2 / taus[:, None] ** 2,
                                                                      sigma=SIGMA)},
                  batch="priors")
    maps = np.asarray(path.params["beta"])  # (T, d)

    # The exact posterior, closed form (X is centred, so the flat intercept separates).
    XtX, Xty = X.T @ X, X.T @ y
    mle = np.linalg.solve(XtX, Xty)
    likelihood_sd = SIGMA * np.sqrt(np.diag(np.linalg.inv(XtX)))
    post_mean, post_sd = [], []
    for tau in taus:
        cov = np.linalg.inv(XtX / SIGMA**2 + np.eye(d) / tau**2)
        post_mean.append(cov @ Xty / SIGMA**2)
        post_sd.append(np.sqrt(np.diag(cov)))
    post_mean, post_sd = np.array(post_mean), np.array(post_sd)
    ridge = np.array([Ridge(alpha=SIGMA**2 / t**2, solver="cholesky").fit(X, y).coef_
                      for t in taus])
    ols = LinearRegression().fit(X, y).coef_

    ctx.metric("sigma", SIGMA)
    ctx.metric("taus", taus)
    ctx.metric("map", maps)
    ctx.metric("posterior_mean", post_mean)
    ctx.metric("posterior_sd", post_sd)
    ctx.metric("mle", mle)
    tol = ctx.tol(1e-6, 1e-3)
    scale = np.max(np.abs(mle))  # the path's scale: relative to it, not to a shrunk MAP
    err_post = float(np.max(np.abs(maps - post_mean)) / scale)
    err_ridge = float(np.max(np.abs(maps - ridge)) / scale)
    ctx.metric("map_vs_posterior_mean.max_rel_error", err_post)
    ctx.metric("map_vs_ridge.max_rel_error", err_ridge)
    ctx.check(
        f"At every prior scale the MAP is the exact posterior mean and Ridge(σ²/τ²) "
        f"({len(taus)} values of τ from {taus[0]:g} to {taus[-1]:g}, one batched fit)",
        evidence=f"max over τ of max |MAP − posterior mean| / max |MLE| = "
                 f"{err_post:.1e}; against Ridge: {err_ridge:.1e}",
        tolerance=f"≤ {tol:.0e}",
        passed=bool(np.all(path.converged)) and err_post <= tol and err_ridge <= tol,
    )
    weak = float(np.linalg.norm(maps[-1] - mle) / np.linalg.norm(mle))
    strong = float(np.linalg.norm(maps[0]) / np.linalg.norm(mle))
    ctx.metric("weak_prior.rel_distance_to_mle", weak)
    ctx.metric("strong_prior.rel_norm", strong)
    ctx.metric("mle_vs_sklearn.rel_error", rel_error(mle, ols))
    ctx.check(
        "As the prior widens the MAP becomes the MLE; as it tightens, the prior mean (0)",
        evidence=f"τ = {taus[-1]:g}: ‖MAP − MLE‖ / ‖MLE‖ = {weak:.1e}; τ = {taus[0]:g}: "
                 f"‖MAP‖ / ‖MLE‖ = {strong:.1e}",
        tolerance="both ≤ 1e-2",
        passed=weak <= 1e-2 and strong <= 1e-2,
    )
    distance = np.linalg.norm(maps - mle, axis=1)
    norms = np.linalg.norm(maps, axis=1)
    monotone = bool(np.all(np.diff(distance) < 0) and np.all(np.diff(norms) > 0))
    ctx.metric("distance_to_mle", distance)
    ctx.metric("map_norm", norms)
    ctx.check(
        "The pull is monotone: a tighter prior always moves the MAP further from the MLE, "
        "towards the prior mean",
        evidence=f"‖MAP − MLE‖ decreases and ‖MAP‖ increases at each of the {len(taus) - 1} "
                 f"steps of τ: {monotone}",
        tolerance="strictly monotone",
        passed=monotone,
    )
    middle = len(taus) // 2
    lap = mm.laplace(model, data, priors={"beta": mm.priors.from_ridge(
        SIGMA**2 / taus[middle] ** 2, sigma=SIGMA)})
    lap_sd = np.asarray(lap.std_errors["beta"])
    err_lap = rel_error(lap_sd, post_sd[middle])
    ctx.metric("laplace.tau", taus[middle])
    ctx.metric("laplace.sd", lap_sd)
    ctx.metric("laplace.rel_error", err_lap)
    ctx.check(
        "For this Gaussian posterior the Laplace approximation is exact",
        evidence=f"τ = {taus[middle]:.3g}: max |Laplace sd − exact sd| / max sd = {err_lap:.1e}",
        tolerance=f"≤ {tol:.0e}",
        passed=err_lap <= tol,
    )

    # The static figure: the path, and the focus coefficient's densities at three scales.
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.3))
    for j, name in enumerate(names):
        line, = axes[0].plot(taus, maps[:, j], lw=1.2, label=name)
        axes[0].fill_between(taus, post_mean[:, j] - 1.96 * post_sd[:, j],
                             post_mean[:, j] + 1.96 * post_sd[:, j], color=line.get_color(),
                             alpha=0.08)
        axes[0].plot(taus[-1] * 1.6, mle[j], "<", color=line.get_color(), ms=5)
    axes[0].set(xscale="log", xlabel="prior scale τ (alpha = σ²/τ²)", ylabel="coefficient",
                title="MAP (lines), 95% posterior band; ◀ MLE")
    axes[0].legend(fontsize=7, ncol=2)
    j = names.index(FOCUS)
    grid = np.linspace(-10, mle[j] + 4 * likelihood_sd[j], 400)

    def normal(x, m, s):
        return np.exp(-0.5 * ((x - m) / s) ** 2) / (s * np.sqrt(2 * np.pi))

    axes[1].plot(grid, normal(grid, mle[j], likelihood_sd[j]), "k--", label="likelihood (normalized)")
    for k, color in zip((len(taus) // 4, middle, 3 * len(taus) // 4), ("C3", "C1", "C2")):
        axes[1].plot(grid, normal(grid, post_mean[k, j], post_sd[k, j]), color=color,
                     label=f"posterior, τ = {taus[k]:.3g}")
        axes[1].axvline(maps[k, j], color=color, lw=0.8, ls=":")
    axes[1].set(xlabel=f"coefficient of {FOCUS}", ylabel="density",
                title=f"{FOCUS}: the posterior between prior (at 0) and likelihood")
    axes[1].legend(fontsize=7)
    ctx.figure(fig, "prior_sweep",
               "Left: the MAP of each diabetes coefficient as the Normal(0, τ) prior widens, "
               "from the prior mean 0 to the MLE (◀), with the exact 95% posterior band. "
               "Right: one coefficient's posterior at three prior scales (dotted: the MAPs).")

    payload = {
        "names": names, "taus": taus.round(6).tolist(), "sigma": SIGMA,
        "mle": mle.round(6).tolist(), "likelihood_sd": likelihood_sd.round(6).tolist(),
        "map": maps.round(6).tolist(), "post_sd": post_sd.round(6).tolist(),
        "focus": names.index(FOCUS),
    }
    ctx.demo(DEMO_HTML.replace("__DATA__", json.dumps(payload)))


DEMO_HTML = r"""
<div id="prior-sweep-demo" style="border:1px solid #ccc;padding:0.8em;margin:1em 0">
<b>Interactive: move the prior scale τ.</b> Precomputed in this run (MAP from mm.fit, exact
posterior); no server, no network.
<div style="margin:0.5em 0"><input id="psd-slider" type="range" min="0" step="1"
 style="width:60%"> <span id="psd-label"></span></div>
<div style="margin:0.3em 0">coefficient for the density panel: <select id="psd-select"></select></div>
<svg id="psd-coef" width="520" height="330" style="vertical-align:top"></svg>
<svg id="psd-dens" width="480" height="330" style="vertical-align:top"></svg>
<div style="font-size:0.85em;color:#555">Left: ○ MLE, ● MAP, blue bar: 95% posterior
interval, grey band: prior ±2τ. Right: prior (grey), normalized likelihood (dashed),
posterior (blue); vertical lines: MLE (black) and MAP (blue).</div>
</div>
<script>
(function () {
  var D = __DATA__;
  var slider = document.getElementById("psd-slider");
  var label = document.getElementById("psd-label");
  var select = document.getElementById("psd-select");
  var left = document.getElementById("psd-coef"), right = document.getElementById("psd-dens");
  slider.max = D.taus.length - 1; slider.value = Math.floor(D.taus.length / 2);
  D.names.forEach(function (n, j) {
    var o = document.createElement("option"); o.value = j; o.text = n;
    if (j === D.focus) o.selected = true; select.appendChild(o);
  });
  // SVG as markup: inline <svg> children parsed by the HTML parser get the SVG namespace.
  var buffers = {};
  function esc(t) { return String(t).replace(/&/g, "&amp;").replace(/</g, "&lt;"); }
  function el(svg, name, attrs, text) {
    var s = "<" + name;
    for (var k in attrs) s += " " + k + '="' + attrs[k] + '"';
    s += text === undefined ? "/>" : ">" + esc(text) + "</" + name + ">";
    buffers[svg.id] = (buffers[svg.id] || "") + s;
  }
  function flush(svg) { svg.innerHTML = buffers[svg.id] || ""; buffers[svg.id] = ""; }
  function normal(x, m, s) { return Math.exp(-0.5 * Math.pow((x - m) / s, 2)) / (s * Math.sqrt(2 * Math.PI)); }
  var lim = 0;
  D.mle.forEach(function (m, j) { lim = Math.max(lim, Math.abs(m) + 2 * D.likelihood_sd[j]); });
  function draw() {
    var k = +slider.value, tau = D.taus[k], f = +select.value;
    label.textContent = "τ = " + tau.toPrecision(3) + "   (Ridge alpha = σ²/τ² = " +
      (D.sigma * D.sigma / (tau * tau)).toPrecision(3) + ")";
    var x0 = 110, x1 = 505, row = 28;
    function X(v) { return x0 + (v + lim) / (2 * lim) * (x1 - x0); }
    el(left, "line", {x1: X(0), x2: X(0), y1: 10, y2: 20 + row * D.names.length, stroke: "#999"});
    D.names.forEach(function (n, j) {
      var yy = 25 + row * j, m = D.map[k][j], s = D.post_sd[k][j];
      el(left, "rect", {x: X(Math.max(-2 * tau, -lim)), y: yy - 9,
        width: X(Math.min(2 * tau, lim)) - X(Math.max(-2 * tau, -lim)), height: 18, fill: "#eee"});
      el(left, "text", {x: 5, y: yy + 4, "font-size": 12, "font-weight": j === f ? "bold" : "normal"}, n);
      el(left, "line", {x1: X(m - 1.96 * s), x2: X(m + 1.96 * s), y1: yy, y2: yy, stroke: "#1f77b4", "stroke-width": 3});
      el(left, "circle", {cx: X(D.mle[j]), cy: yy, r: 5, fill: "none", stroke: "black"});
      el(left, "circle", {cx: X(m), cy: yy, r: 4, fill: "#1f77b4"});
    });
    el(left, "text", {x: X(-lim), y: 322, "font-size": 11}, (-lim).toFixed(0));
    el(left, "text", {x: X(lim) - 20, y: 322, "font-size": 11}, lim.toFixed(0));
    var m = D.map[k][f], s = D.post_sd[k][f], mle = D.mle[f], ls = D.likelihood_sd[f];
    var lo = Math.min(-3 * Math.min(tau, 3 * ls), mle - 4 * ls, m - 4 * s);
    var hi = Math.max(3 * Math.min(tau, 3 * ls), mle + 4 * ls, m + 4 * s);
    var xs = [], ymax = 0;
    for (var i = 0; i <= 200; i++) xs.push(lo + (hi - lo) * i / 200);
    var curves = [[function (x) { return normal(x, 0, tau); }, "#999", ""],
                  [function (x) { return normal(x, mle, ls); }, "black", "5,4"],
                  [function (x) { return normal(x, m, s); }, "#1f77b4", ""]];
    curves.forEach(function (c) { xs.forEach(function (x) { ymax = Math.max(ymax, c[0](x)); }); });
    function PX(v) { return 20 + (v - lo) / (hi - lo) * 440; }
    function PY(v) { return 300 - v / ymax * 270; }
    curves.forEach(function (c) {
      el(right, "polyline", {points: xs.map(function (x) { return PX(x) + "," + PY(c[0](x)); }).join(" "),
        fill: "none", stroke: c[1], "stroke-width": 2, "stroke-dasharray": c[2]});
    });
    el(right, "line", {x1: PX(mle), x2: PX(mle), y1: 30, y2: 300, stroke: "black"});
    el(right, "line", {x1: PX(m), x2: PX(m), y1: 30, y2: 300, stroke: "#1f77b4"});
    el(right, "line", {x1: 20, x2: 460, y1: 300, y2: 300, stroke: "#999"});
    el(right, "text", {x: 20, y: 318, "font-size": 11}, lo.toFixed(1));
    el(right, "text", {x: 430, y: 318, "font-size": 11}, hi.toFixed(1));
    el(right, "text", {x: 20, y: 20, "font-size": 12}, D.names[f] + ": MLE " + mle.toFixed(2) +
       ", MAP " + m.toFixed(2) + ", posterior sd " + s.toFixed(2));
    flush(left); flush(right);
  }
  slider.addEventListener("input", draw); select.addEventListener("change", draw); draw();
})();
</script>
"""
