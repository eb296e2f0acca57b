"""The side-by-side film viewer: a small HTML/JS page embedded in the Streamlit page.

Zoom and pan come from the Panzoom library (npm ``@panzoom/panzoom``, MIT, installed
into ``ui/static`` by ``make install``) and window/level from an SVG
``feComponentTransfer`` filter (an exact linear ramp, done by the browser), so the page
carries no canvas drawing code of its own. Each pane has its own zoom; window/level and the
attention overlay apply to both. Window/level act on the standardized 8-bit image the model
saw (0–255), not on Hounsfield units or raw detector values.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

PANZOOM_JS = Path(__file__).resolve().parent / "static" / "node_modules" / "@panzoom" / "panzoom" / "dist" / "panzoom.min.js"
HEIGHT = 700

#: (label, window, level) on the 0–255 display scale of the standardized image
PRESETS = [("Full range", 256, 128), ("Lungs", 160, 80), ("Mediastinum", 110, 150), ("Bone", 90, 205)]
#: OpenCV's JET colours (what the API's attention overlay uses), low -> high
JET = ["#00007f", "#0000ff", "#007fff", "#00ffff", "#7fff7f", "#ffff00", "#ff7f00", "#ff0000", "#7f0000"]


class ViewerAssetMissing(RuntimeError):
    """The Panzoom script is not installed (``make install`` runs ``npm ci`` in ui/static)."""


def panzoom_script() -> str:
    if not PANZOOM_JS.is_file():
        raise ViewerAssetMissing("the viewer's zoom library is not installed: run `make install` "
                                 "(or `npm ci --prefix ui/static`)")
    return PANZOOM_JS.read_text(encoding="utf-8")


def _src(png: bytes | str | None) -> str | None:
    if not png:
        return None
    b64 = png if isinstance(png, str) else base64.b64encode(png).decode()
    return f"data:image/png;base64,{b64}"


def _pane(pane_id: str, title: str, image: str | None, overlay: str | None) -> str:
    if image is None:
        body = "<div class='empty'>Choose a neighbour below (“Open in viewer”).</div>"
    else:
        ov = f"<img class='ov' src='{overlay}' alt='attention'>" if overlay else ""
        body = (f"<div class='stack' id='{pane_id}-stack'><img class='film' src='{image}' alt='{html.escape(title)}'>"
                f"{ov}</div>")
    return (f"<div class='pane' id='{pane_id}'><div class='ptitle'><span class='t' title='{html.escape(title)}'>"
            f"{html.escape(title)}</span>"
            f"<span class='tools'><button data-z='{pane_id}' data-act='in' title='zoom in'>+</button>"
            f"<button data-z='{pane_id}' data-act='out' title='zoom out'>−</button>"
            f"<button data-z='{pane_id}' data-act='reset' title='reset zoom and pan'>reset</button></span></div>"
            f"<div class='vp' id='{pane_id}-vp'>{body}</div></div>")


def viewer_html(query_png: bytes | str | None, attention_png: bytes | str | None,
                neighbour_png: bytes | str | None, neighbour_title: str) -> str:
    """The whole viewer document (for ``streamlit.components.v1.html``)."""
    presets = "".join(f"<button class='preset' data-w='{w}' data-l='{lv}'>{html.escape(name)}</button>"
                      for name, w, lv in PRESETS)
    gradient = ", ".join(JET)
    has_overlay = attention_png is not None
    return f"""<!doctype html><html><head><meta charset="utf-8"><style>
body{{font-family:system-ui,sans-serif;margin:0;color:#222;font-size:14px}}
.bar{{display:flex;flex-wrap:wrap;gap:0.8em;align-items:center;margin:0 0 6px 0}}
.panes{{display:flex;gap:8px}}
.pane{{flex:1;min-width:0}}
.ptitle{{display:flex;justify-content:space-between;font-weight:600;margin-bottom:2px;white-space:nowrap}}
.ptitle .t{{overflow:hidden;text-overflow:ellipsis}} .tools{{flex:none}}
.vp{{height:560px;background:#000;overflow:hidden;position:relative;cursor:grab}}
.stack{{position:relative;width:100%;height:100%}}
.stack img{{position:absolute;inset:0;width:100%;height:100%;object-fit:contain;user-select:none;-webkit-user-drag:none}}
.film{{filter:url(#wl)}}
.empty{{color:#bbb;padding:2em}}
.cbar{{display:inline-block;width:160px;height:12px;background:linear-gradient(to right,{gradient});vertical-align:middle}}
button{{font-size:13px}}
</style></head><body>
<svg width="0" height="0" style="position:absolute"><filter id="wl" color-interpolation-filters="sRGB">
<feComponentTransfer><feFuncR id="fr" type="linear" slope="1" intercept="0"/>
<feFuncG id="fg" type="linear" slope="1" intercept="0"/><feFuncB id="fb" type="linear" slope="1" intercept="0"/>
</feComponentTransfer></filter></svg>
<div class="bar">
 <label>Window <input id="win" type="range" min="2" max="256" value="256"></label><span id="win-v">256</span>
 <label>Level <input id="lev" type="range" min="0" max="255" value="128"></label><span id="lev-v">128</span>
 {presets}
 <span title="drag with Shift held to change window (left-right) and level (up-down)">Shift+drag: W/L</span>
</div>
<div class="bar">
 <label><input id="ovl" type="checkbox" {'checked' if has_overlay else 'disabled'}> Attention overlay</label>
 <label>opacity <input id="opa" type="range" min="0" max="100" value="45"></label>
 <span>low <span class="cbar" id="cbar"></span> high attention (min–max per image; low is transparent)</span>
</div>
<div class="panes">{_pane("q", "Query (standardized)", _src(query_png), _src(attention_png))}
{_pane("n", neighbour_title, _src(neighbour_png), None)}</div>
<script>{panzoom_script()}</script>
<script>
const pz = {{}};
for (const id of ["q", "n"]) {{
  const el = document.getElementById(id + "-stack");
  if (!el) continue;
  pz[id] = Panzoom(el, {{maxScale: 16, minScale: 1, step: 0.3, contain: "outside"}});
  el.parentElement.addEventListener("wheel", pz[id].zoomWithWheel);
}}
document.querySelectorAll("button[data-z]").forEach(b => b.addEventListener("click", () => {{
  const p = pz[b.dataset.z]; if (!p) return;
  if (b.dataset.act === "in") p.zoomIn(); else if (b.dataset.act === "out") p.zoomOut(); else p.reset();
}}));
const win = document.getElementById("win"), lev = document.getElementById("lev");
function applyWL() {{
  const w = +win.value, l = +lev.value, slope = 255 / w, icpt = -(l - w / 2) / w;
  for (const f of ["fr", "fg", "fb"]) {{
    const n = document.getElementById(f); n.setAttribute("slope", slope); n.setAttribute("intercept", icpt);
  }}
  document.getElementById("win-v").textContent = w; document.getElementById("lev-v").textContent = l;
}}
win.addEventListener("input", applyWL); lev.addEventListener("input", applyWL);
document.querySelectorAll(".preset").forEach(b => b.addEventListener("click", () => {{
  win.value = b.dataset.w; lev.value = b.dataset.l; applyWL();
}}));
let drag = null;
document.querySelectorAll(".vp").forEach(vp => {{
  vp.addEventListener("pointerdown", e => {{
    if (!e.shiftKey) return;
    e.stopImmediatePropagation(); e.preventDefault();
    drag = {{x: e.clientX, y: e.clientY, w: +win.value, l: +lev.value}};
  }}, true);
}});
window.addEventListener("pointermove", e => {{
  if (!drag) return;
  win.value = Math.max(2, Math.min(256, drag.w + (e.clientX - drag.x)));
  lev.value = Math.max(0, Math.min(255, drag.l - (e.clientY - drag.y))); applyWL();
}});
window.addEventListener("pointerup", () => {{ drag = null; }});
const ov = document.querySelector("#q .ov"), ovl = document.getElementById("ovl"), opa = document.getElementById("opa");
function applyOverlay() {{ if (ov) {{ ov.style.display = ovl.checked ? "block" : "none"; ov.style.opacity = opa.value / 100; }} }}
ovl.addEventListener("change", applyOverlay); opa.addEventListener("input", applyOverlay); applyOverlay();
applyWL();
window.cxrViewer = {{pz, applyWL, presets: {json.dumps(PRESETS)}}};
</script></body></html>"""
