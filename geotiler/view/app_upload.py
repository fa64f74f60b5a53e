"""The page's upload panel: a scene dropped on the page (or picked) is predicted and shown.

The only JavaScript of our own lives here: it posts the file to the server's ``/upload`` and
hands the returned token to Python through a hidden text input.
"""

from __future__ import annotations

from typing import Any

from bokeh.models import Button, CustomJS, Div, Select, TextInput

from geotiler.view.app_edit import POLL_MS, rebuild

ARM_TRIES = 200
UPLOAD_JS = """
// Our one piece of JavaScript: send a file to /upload, hand the token to Python. The page's
// latest token and status widgets are kept on window, so the drop handler (installed once)
// keeps working after the page is rebuilt with new widgets.
window.__geotiler_upload = [token, status]
function models() { return window.__geotiler_upload }
function send(file) {
  const [token, status] = models()
  status.text = `uploading ${file.name} ...`
  fetch('/upload', {method: 'POST', headers: {'X-Filename': encodeURIComponent(file.name)},
                    body: file})
    .then(r => r.ok ? r.json() : r.text().then(t => { throw new Error(r.statusText || t) }))
    .then(j => { models()[0].value = `${j.token}|${j.name}` })
    .catch(e => { models()[1].text = `upload failed: ${e.message}` })
}
if (mode === 'pick') {
  const input = document.createElement('input')
  input.type = 'file'
  input.accept = '.tif,.tiff'
  input.onchange = () => { if (input.files.length) send(input.files[0]) }
  input.click()
} else if (!window.__geotiler_drop) {
  window.__geotiler_drop = true
  models()[0].tags = ['armed']
  document.addEventListener('dragover', e => e.preventDefault())
  document.addEventListener('drop', e => {
    e.preventDefault()
    if (e.dataTransfer && e.dataTransfer.files.length) send(e.dataTransfer.files[0])
  })
} else {
  models()[0].tags = ['armed']
}
"""


class UploadPanel:
    """Upload a scene, pick a model, predict in the background, show the new map."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.state = page.state
        self.sources = page.sources
        self.widgets: list[Any] = []
        self._build()

    def _build(self) -> None:
        self.token = TextInput(value="", visible=False, name="upload-token")
        self.upload_status = Div(text="Drop a GeoTIFF scene on the page, or", name="upload-status")
        pick = Button(label="choose a scene file", width=160, name="upload-button")
        args = {"token": self.token, "status": self.upload_status}
        pick.js_on_click(CustomJS(args={**args, "mode": "pick"}, code=UPLOAD_JS))
        self._arm_drop()
        models = self.sources.models
        self.model = Select(title="model", options=list(models), value=next(iter(models), ""))
        self.predict = Button(label="predict", button_type="primary", disabled=True, width=100)
        self.token.on_change("value", lambda _a, _o, new: self._uploaded(new))
        self.predict.on_click(self._start_prediction)
        self.job: Any = None
        self.widgets += [
            Div(text="<b>predict a new scene</b>"), self.upload_status, pick, self.model,
            self.predict, self.token,
        ]  # fmt: skip

    def _arm_drop(self) -> None:
        """Have the browser install the drop handler, asking until it says it has.

        Bokeh's document_ready event waits for every layer to finish drawing, and hidden tile
        layers never draw; so Python pokes a property the page listens to, every 300 ms, until
        the page answers through the token's tags.
        """
        args = {"token": self.token, "status": self.upload_status, "mode": "drop"}
        self.upload_status.js_on_change("tags", CustomJS(args=args, code=UPLOAD_JS))
        tries = iter(range(1, ARM_TRIES + 1))

        def poke() -> None:
            attempt = next(tries, None)
            if "armed" in self.token.tags or attempt is None:
                self.page.doc.remove_periodic_callback(self._arming)
                return
            self.upload_status.tags = [str(attempt)]

        self._arming = self.page.doc.add_periodic_callback(poke, 300)

    def _uploaded(self, value: str) -> None:
        token, _, name = value.partition("|")
        if token in self.state.uploads:
            self.upload_status.text = f"uploaded {name}; pick a model and press predict"
            self.predict.disabled = not self.model.value

    def _start_prediction(self) -> None:
        from geotiler.view.jobs import PredictJob

        token = self.token.value.partition("|")[0]
        scene = self.state.uploads.get(token)
        model = self.sources.models.get(self.model.value)
        if scene is None or model is None:
            return
        stem = scene.stem
        self.job = PredictJob(
            scene=scene, model=model,
            output=self.state.upload_dir / f"{stem}-landcover.tif",
            probabilities=self.state.upload_dir / f"{stem}-probabilities.tif",
        ).start()  # fmt: skip
        self.predict.disabled = True
        self.poll = self.page.doc.add_periodic_callback(self._progress, POLL_MS)

    def _progress(self) -> None:
        job = self.job
        if job.state == "running":
            self.upload_status.text = (
                f"predicting: <progress value='{job.done}' max='{max(job.total, 1)}'></progress> "
                f"{job.fraction:.0%}"
            )
            return
        self.page.doc.remove_periodic_callback(self.poll)
        if job.state == "failed":
            self.upload_status.text = f"prediction failed: {job.error}"
            self.predict.disabled = False
            return
        self.state.show(
            self.sources.with_prediction(job.scene, job.scene.stem, job.output, job.probabilities)
        )
        self.state.notes = f"predicted {job.scene.name} with {self.model.value}"
        rebuild(self.page.doc, self.state)
