"""Top/base selection, SHALLOW/DELETE/keep-relative/bandwidth, the planner's message, Commit."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QGuiApplication
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from backchain.core.graph import ImageGraph, Layer
from backchain.core.model import CommitRequest, EngineKind, Operation, Role
from backchain.ui.elide import distinct_names
from backchain.ui.roles import STYLES, readable
from backchain.ui.wording import humane_plan_error

MiB = 1 << 20


class PlanPanel(QGroupBox):
    """The user's commit request; every change emits ``changed`` so the preview re-plans."""

    changed = Signal()
    commit_clicked = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Commit", parent)
        self._graph: ImageGraph | None = None
        self._focus: str | None = None
        self._updating = False
        self.engine = EngineKind.QEMU_IMG
        """The engine the request names; the window sets its source's."""
        self._adjust: Callable[[CommitRequest], CommitRequest] | None = None
        self._locked = False

        self.top_combo = QComboBox()
        self.top_combo.setAccessibleName("Top layer")
        self.top_combo.setToolTip("The highest layer whose data is committed (click a node).")
        self.base_combo = QComboBox()
        self.base_combo.setAccessibleName("Base layer")
        self.base_combo.setToolTip("The layer that receives the data (Shift+click a node).")
        for combo in (self.top_combo, self.base_combo):
            combo.setSizeAdjustPolicy(
                QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
            )
            combo.setMinimumContentsLength(18)
            # A planner message must never squeeze the fields to a sliver.
            combo.setMinimumWidth(combo.fontMetrics().averageCharWidth() * 24)
            combo.currentIndexChanged.connect(self._on_combo_changed)

        self._make_options()
        self._make_layout()

    def _make_options(self) -> None:
        """SHALLOW, DELETE, keep-relative, bandwidth, the planner's message and Commit."""
        self.shallow = QCheckBox("SHALLOW: only into top's own backing file")
        self.shallow.setAccessibleName("Shallow")
        self.shallow.setToolTip("libvirt's VIR_DOMAIN_BLOCK_COMMIT_SHALLOW.")
        self.delete = QCheckBox("DELETE the merged layers afterwards")
        self.delete.setAccessibleName("Delete merged layers")
        self.delete.setToolTip(
            "Remove top and the layers between base and top once the commit succeeded "
            "(after comparing top's view with base)."
        )
        self.keep_relative = QCheckBox("Keep relative backing paths")
        self.keep_relative.setAccessibleName("Keep relative backing paths")
        self.keep_relative.setToolTip("Write base's name relative to each re-pointed overlay.")
        for box in (self.shallow, self.delete, self.keep_relative):
            box.toggled.connect(self._on_option_changed)
        self.direction = self._direction_switch()

        self.rate = QSpinBox()
        self.rate.setRange(0, 100_000)
        self.rate.setSuffix(" MiB/s")
        self.rate.setSpecialValueText("unlimited")
        self.rate.setAccessibleName("Bandwidth limit")
        self.rate.setToolTip("Limit the commit's bandwidth (qemu-img commit -r); 0 = unlimited.")
        self.rate.valueChanged.connect(self._on_option_changed)

        self.message = QLabel()
        self.message.setObjectName("planMessage")
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.message.setAccessibleName("Planner message")
        self.message.hide()
        self._options = QVBoxLayout()
        self._options.setContentsMargins(0, 0, 0, 0)

        self.commit_button = QPushButton("Commit…")
        self.commit_button.setAccessibleName("Commit")
        self.commit_button.setToolTip("Review the effects and run this commit (Ctrl+Enter).")
        self.commit_button.setEnabled(False)
        self.commit_button.clicked.connect(self.commit_clicked)

    def _make_layout(self) -> None:
        form = QFormLayout()
        form.addRow("&Top:", self.top_combo)
        form.addRow("&Base:", self.base_combo)
        form.addRow("Bandwidth:", self.rate)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        for box in (self.shallow, self.delete):
            layout.addWidget(box)
        row = QHBoxLayout()
        row.addWidget(QLabel("Direction:"))
        row.addWidget(self.direction)
        row.addWidget(self.keep_relative)
        row.addStretch(1)
        row.addWidget(self.commit_button)
        layout.addLayout(row)
        layout.addWidget(self.message)
        layout.addLayout(self._options)

    def add_option(self, widget: QWidget) -> None:
        """A source's own control (re-point, the ACTIVE note) below the common ones."""
        self._options.addWidget(widget)

    def set_adjust(self, adjust: Callable[[CommitRequest], CommitRequest] | None) -> None:
        """The one source's rule for its requests (ACTIVE for the running VM's layer)."""
        self._adjust = adjust

    def set_locked(self, locked: bool, live_rate: bool = False) -> None:
        """While a job runs: selection, options and Commit are fixed; a live rate stays."""
        self._locked = locked
        for widget in (self.top_combo, self.base_combo, self.shallow, self.delete,
                       self.keep_relative):  # fmt: skip
            widget.setEnabled(not locked)
        for index in range(self._options.count()):
            item = self._options.itemAt(index)
            option = item.widget() if item is not None else None
            if option is not None:
                option.setEnabled(not locked)
        self.shallow.setEnabled(not locked and self.operation() is Operation.COMMIT)
        self.rate.setEnabled(not locked or live_rate)
        if locked:
            self.commit_button.setEnabled(False)

    # -- graph and selection ----------------------------------------------------------------------

    def set_graph(self, graph: ImageGraph | None, focus: str | None) -> None:
        """Fill the combo boxes; keep the current choice where the layers still exist."""
        top, base = self.top(), self.base()
        self._graph, self._focus = graph, focus
        self._updating = True
        try:
            for combo, default in (
                (self.top_combo, "(default: the active layer)"),
                (self.base_combo, "(default: bottom, or top's backing with SHALLOW)"),
            ):
                combo.clear()
                combo.addItem(default, None)
                paths = self._ordered_paths()
                short = distinct_names([graph.layer(p).name for p in paths]) if graph else paths
                for path, name in zip(paths, short, strict=True):
                    text = _combo_text(graph.layer(path), name) if graph else path
                    combo.addItem(text, path)
                    combo.setItemData(combo.count() - 1, path, Qt.ItemDataRole.ToolTipRole)
            self._select(self.top_combo, top)
            self._select(self.base_combo, base)
        finally:
            self._updating = False
        self.changed.emit()

    def _ordered_paths(self) -> list[str]:
        """The focus chain from the active layer down, then every other image by name."""
        if self._graph is None:
            return []
        first = [layer.path for layer in self._graph.chain(self._focus)] if self._focus else []
        rest = sorted(
            (p for p in self._graph.paths if p not in first), key=lambda p: (p.count("/"), p)
        )
        return first + rest

    @staticmethod
    def _select(combo: QComboBox, path: str | None) -> None:
        index = combo.findData(path) if path is not None else 0
        combo.setCurrentIndex(max(index, 0))

    def top(self) -> str | None:
        """The chosen top's path, or None for the default."""
        value = self.top_combo.currentData()
        return str(value) if value else None

    def base(self) -> str | None:
        """The chosen base's path, or None for the default."""
        value = self.base_combo.currentData()
        return str(value) if value else None

    def choose_top(self, path: str) -> None:
        """Make ``path`` top; a base that is not below it falls back to the default."""
        if self._graph is not None and self.base() is not None:
            below = [layer.path for layer in self._graph.chain(path)][1:]
            if self.base() not in below:
                self._updating = True
                self.base_combo.setCurrentIndex(0)
                self._updating = False
        self._select(self.top_combo, path)

    def choose_base(self, path: str) -> None:
        """Make ``path`` base (Shift+click, or "Commit into this layer")."""
        self._select(self.base_combo, path)

    def image(self) -> str | None:
        """The chain the request works on: the opened image's, or a branch that holds top."""
        if self._graph is None or self._focus is None:
            return None
        top = self.top()
        if top is None or top in {layer.path for layer in self._graph.chain(self._focus)}:
            return self._focus
        for active in self._graph.active_layers():
            if top in {layer.path for layer in self._graph.chain(active)}:
                return active
        return self._focus

    def request(self) -> CommitRequest | None:
        """The request as the controls stand, or None while nothing is open."""
        return self._request_for(self.operation(), self.base(), self.shallow.isChecked())

    def counterpart_request(self) -> CommitRequest | None:
        """The other direction's request for the same shortening: what switching would plan.

        SHALLOW names the lower layer implicitly (top's backing file); a pull has no SHALLOW,
        so the other direction names that layer itself, as the switch then selects it.
        """
        other = Operation.COMMIT if self.operation() is Operation.PULL else Operation.PULL
        return self._request_for(other, self._lower(), shallow=False)

    def _lower(self) -> str | None:
        """The lower layer the selection bounds, with SHALLOW's resolved (top's backing)."""
        if self.operation() is Operation.PULL or not self.shallow.isChecked():
            return self.base()
        return self._shallow_lower()

    def _shallow_lower(self) -> str | None:
        image = self.image()
        if self._graph is None or image is None:
            return self.base()
        top = self.top() or self._graph.chain(image)[0].path
        return self.base() or (self._graph.backing_of(top) if top in self._graph else None)

    def _request_for(
        self, operation: Operation, lower: str | None, shallow: bool
    ) -> CommitRequest | None:
        image = self.image()
        if image is None:
            return None
        pull = operation is Operation.PULL
        request = CommitRequest(
            image=image,
            top=self.top(),
            base=self._pull_base(lower) if pull else lower,
            operation=operation,
            shallow=shallow and not pull,
            delete=self.delete.isChecked(),
            keep_relative=self.keep_relative.isChecked(),
            rate=self.rate.value() * MiB,
            engine=self.engine,
        )
        return request if self._adjust is None else self._adjust(request)

    def _direction_switch(self) -> QComboBox:
        """Commit or Pull: the same selection, the other way round."""
        switch = QComboBox()
        switch.setAccessibleName("Direction")
        switch.setToolTip(
            "Commit writes the data down into base; Pull copies it up into top, and no other "
            "image changes. Top and base bound the part of the chain to shorten in both."
        )
        switch.addItem("Commit", Operation.COMMIT.value)
        switch.addItem("Pull", Operation.PULL.value)
        switch.currentIndexChanged.connect(self._on_direction_changed)
        return switch

    def operation(self) -> Operation:
        """Commit or pull, as the direction switch stands."""
        return Operation(self.direction.currentData() or Operation.COMMIT.value)

    def set_direction(self, operation: str) -> None:
        """Switch to ``commit`` or ``pull`` (the advice's button); the selection stays."""
        index = self.direction.findData(Operation(operation).value)
        if index >= 0:
            self.direction.setCurrentIndex(index)

    def _pull_base(self, lower: str | None) -> str | None:
        """The same shortening as a pull: the selected lower layer and those between leave
        top's chain, so the layer below it stays as top's backing (none: top is standalone)."""
        if lower is None or self._graph is None or lower not in self._graph:
            return lower
        return self._graph.backing_of(lower)

    def _on_direction_changed(self, _index: int) -> None:
        pull = self.operation() is Operation.PULL
        if pull and self.shallow.isChecked():
            # The pull the preview's other column showed names SHALLOW's base explicitly.
            self._updating = True
            lower = self._shallow_lower()
            self.shallow.blockSignals(True)
            self.shallow.setChecked(False)
            self.shallow.blockSignals(False)
            self._select(self.base_combo, lower)
            self._updating = False
        self.shallow.setEnabled(not pull and not self._locked)
        self.commit_button.setText("Pull…" if pull else "Commit…")
        self.changed.emit()

    def show_verdict(self, error: str | None, busy: bool = False) -> None:
        """The planner's refusal in words (its own text in the tooltip); Commit follows it."""
        words, details = humane_plan_error(error) if error else ("", "")
        # Red as strong as the palette's background needs, so it reads on dark themes too.
        palette = QGuiApplication.palette()
        colour = readable(QColor(STYLES[Role.DELETED].colour), palette).name()
        self.message.setStyleSheet(f"QLabel#planMessage {{ color: {colour}; font-weight: bold; }}")
        self.message.setText(words)
        self.message.setToolTip(f"Details: {details}" if details else "")
        self.message.setVisible(bool(error))
        self.commit_button.setEnabled(
            error is None and not busy and not self._locked and self._graph is not None
        )
        # The splitter may not squeeze the Top/Base fields to a sliver to fit the message.
        self.setMinimumHeight(self.sizeHint().height())

    def planner_text(self) -> str:
        """The planner's own words for the refusal shown (Details), or the words shown."""
        tip = self.message.toolTip()
        return tip.removeprefix("Details: ") if tip else self.message.text()

    def _on_combo_changed(self, _index: int) -> None:
        if not self._updating:
            self.changed.emit()

    def _on_option_changed(self, *_args: object) -> None:
        self.changed.emit()


def _combo_text(layer: Layer, name: str) -> str:
    """The (shortened) file name, with libvirt's ``vda[N]`` index beside it when there is one."""
    label = layer.extra.get("label")
    return f"{name}  ({label})" if label else name
