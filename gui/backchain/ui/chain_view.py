"""The image graph drawn with QGraphicsScene/View: nodes, overlay -> backing edges, zoom and pan."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QPoint, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import (
    QAction,
    QBrush,
    QContextMenuEvent,
    QFocusEvent,
    QGuiApplication,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPainterPath,
    QPalette,
    QPen,
    QPolygonF,
    QWheelEvent,
)
from PySide6.QtWidgets import (
    QGraphicsItem,
    QGraphicsScene,
    QGraphicsTextItem,
    QGraphicsView,
    QMenu,
    QWidget,
)

from backchain.core.graph import ImageGraph
from backchain.core.model import Role
from backchain.ui.elide import distinct_names
from backchain.ui.graph_layout import layout
from backchain.ui.menus import snapshot_actions
from backchain.ui.node_item import NODE_HEIGHT, NODE_WIDTH, NodeItem, card_height

PLACEHOLDER = "Open an image (Ctrl+O), drop one here, or try the demo (File → Open demo)."

COLUMN_STEP = NODE_WIDTH + 56
ROW_STEP = NODE_HEIGHT + 44
MIN_SCALE, MAX_SCALE = 0.05, 4.0
_ARROWS: dict[int, tuple[int, int]] = {
    int(Qt.Key.Key_Up): (0, -1),
    int(Qt.Key.Key_Down): (0, 1),
    int(Qt.Key.Key_Left): (-1, 0),
    int(Qt.Key.Key_Right): (1, 0),
}


class EdgeItem(QGraphicsItem):
    """An arrow from an overlay down to its backing file."""

    def __init__(self, overlay: NodeItem, backing: NodeItem) -> None:
        super().__init__()
        self.setZValue(-1)
        start = overlay.pos() + QPointF(NODE_WIDTH / 2, overlay.height)
        end = backing.pos() + QPointF(NODE_WIDTH / 2, 0)
        path = QPainterPath(start)
        if abs(start.x() - end.x()) < 1:
            path.lineTo(end)
        else:
            middle = (start.y() + end.y()) / 2
            path.cubicTo(QPointF(start.x(), middle), QPointF(end.x(), middle), end)
        self._path = path
        self._tip = end
        self._bounds = path.boundingRect().adjusted(-8, -8, 8, 8)

    def boundingRect(self) -> QRectF:
        """The curve's box, with room for the arrow head."""
        return self._bounds

    def paint(self, painter: QPainter, option: object, widget: QWidget | None = None) -> None:
        """A thin curve and a filled arrow head at the backing end."""
        colour = QGuiApplication.palette().color(QPalette.ColorRole.Text)
        colour.setAlpha(150)
        pen = QPen(colour, 1.6)
        pen.setCosmetic(True)
        painter.setPen(pen)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawPath(self._path)
        tip = self._tip
        head = QPolygonF([tip, tip + QPointF(-6, -11), tip + QPointF(6, -11)])
        painter.setBrush(QBrush(colour))
        painter.drawPolygon(head)


class ChainView(QGraphicsView):
    """Shows an ImageGraph; click picks top, shift-click or the context menu picks base."""

    top_chosen = Signal(str)
    base_chosen = Signal(str)
    snapshot_delete_requested = Signal(str)
    """A layer card's "Delete snapshot NAME…": the libvirt snapshot's name."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("chainView")
        self.setAccessibleName("Backing chain graph")
        self.setToolTip(
            "Click a layer to make it top; Shift+click or right-click to commit into it. "
            "Arrow keys move between layers, Enter makes one top, Shift+Enter base. "
            "Ctrl+wheel zooms, drag pans."
        )
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.locked = False
        """While a job runs the selection is fixed: clicks and keys pick nothing."""
        self.current: str | None = None
        """The node the keyboard is on."""
        self.setScene(QGraphicsScene(self))
        self.setRenderHints(QPainter.RenderHint.Antialiasing | QPainter.RenderHint.TextAntialiasing)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.SmartViewportUpdate)
        self.setAcceptDrops(False)  # the main window takes dropped files
        self.nodes: dict[str, NodeItem] = {}
        self._graph: ImageGraph | None = None
        self._placeholder()

    # -- content -------------------------------------------------------------------------------

    def _placeholder(self, message: str = PLACEHOLDER) -> None:
        text = QGraphicsTextItem(message)
        text.setTextWidth(max(240.0, self.viewport().width() - 40.0))
        text.setDefaultTextColor(self.palette().color(QPalette.ColorRole.PlaceholderText))
        self.scene().addItem(text)
        self.scene().setSceneRect(text.boundingRect())
        self.resetTransform()

    def show_message(self, message: str) -> None:
        """An empty graph with ``message`` in its place (a failed open)."""
        self.set_graph(None)
        self.scene().clear()
        self._placeholder(message)

    def set_graph(
        self,
        graph: ImageGraph | None,
        focus: str | None = None,
        marks: dict[str, str] | None = None,
    ) -> None:
        """Show ``graph``; when only the layers' data changed, keep the positions and the zoom."""
        old = self._graph
        self._graph = graph
        marks = marks or {}
        if graph is not None and old is not None and set(graph.paths) == set(self.nodes):
            same_edges = all(graph.backing_of(p) == old.backing_of(p) for p in graph.paths)
            same_sizes = all(card_height(x) == self.nodes[x.path].height for x in graph)
            if same_edges and same_sizes:
                for path, item in self.nodes.items():
                    active = graph.is_active(path)
                    item.set_layer(graph.layer(path), active, marks.get(path, ""))
                return
        scene = self.scene()
        scene.clear()
        self.nodes = {}
        self.current = None
        if graph is None:
            self._placeholder()
            return
        slots = layout(graph, focus)
        # Cards with snapshot lines are taller: every row makes room for the tallest card.
        row_step = (
            ROW_STEP + max((card_height(x) for x in graph), default=NODE_HEIGHT) - NODE_HEIGHT
        )
        names = dict(zip(slots, distinct_names([graph.layer(p).name for p in slots]), strict=True))
        for path, slot in slots.items():
            item = NodeItem(graph.layer(path), active=graph.is_active(path))
            item.display_name = names[path]
            item.set_layer(item.layer, item.active, marks.get(path, ""))
            item.setPos(slot.column * COLUMN_STEP, -slot.row * row_step)
            scene.addItem(item)
            self.nodes[path] = item
        for overlay, backing in graph.edges:
            scene.addItem(EdgeItem(self.nodes[overlay], self.nodes[backing]))
        scene.setSceneRect(scene.itemsBoundingRect().adjusted(-40, -40, 40, 40))
        self.fit()
        self.set_current(focus if focus in self.nodes else None)

    def set_current(self, path: str | None) -> None:
        """Put the keyboard's focus ring on ``path``."""
        if self.current in self.nodes:
            self.nodes[self.current].set_focused(False)
        self.current = path
        if path is not None and path in self.nodes:
            self.nodes[path].set_focused(self.hasFocus())
            self.ensureVisible(self.nodes[path], 20, 20)

    def set_preview(self, roles: dict[str, Role], top: str | None, base: str | None) -> None:
        """Colour every node by its role and mark the chosen top and base."""
        for path, item in self.nodes.items():
            item.set_state(roles.get(path, Role.UNTOUCHED), path == top, path == base)

    def role_of(self, path: str) -> Role:
        """The role a node is drawn with (for tests and accessibility)."""
        return self.nodes[path].role

    def node_point(self, path: str) -> QPoint:
        """The viewport position of a node's centre (for tests that click it)."""
        item = self.nodes[path]
        self.ensureVisible(item)
        return self.mapFromScene(item.sceneBoundingRect().center())

    def changeEvent(self, event: QEvent) -> None:
        """A new palette (light/dark switch): repaint, since the cards read it while painting."""
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange:
            self.scene().update()
            self.viewport().update()

    # -- zoom and pan ----------------------------------------------------------------------------

    def fit(self) -> None:
        """Fit the whole graph in the window, never enlarging past natural size."""
        rect = self.scene().sceneRect()
        if rect.isEmpty():
            return
        self.fitInView(rect, Qt.AspectRatioMode.KeepAspectRatio)
        if self.transform().m11() > 1.0:
            self.resetTransform()
            self.centerOn(rect.center())

    def zoom(self, factor: float) -> None:
        """Zoom by ``factor`` within sane limits."""
        current = self.transform().m11()
        # A tall graph (a 150-layer chain) fits only below MIN_SCALE: zooming out may go as far
        # as the whole graph, and zooming in from there must never jump.
        floor = min(MIN_SCALE, self._fit_scale(), current)
        target = max(floor, min(max(MAX_SCALE, current), current * factor))
        self.scale(target / current, target / current)

    def _fit_scale(self) -> float:
        """The scale at which the whole scene fits the viewport."""
        rect = self.scene().sceneRect()
        viewport = self.viewport().rect()
        if rect.isEmpty() or viewport.isEmpty():
            return MIN_SCALE
        return min(viewport.width() / rect.width(), viewport.height() / rect.height())

    def zoom_in(self) -> None:
        """One step closer."""
        self.zoom(1.25)

    def zoom_out(self) -> None:
        """One step further."""
        self.zoom(0.8)

    def wheelEvent(self, event: QWheelEvent) -> None:
        """Ctrl+wheel zooms under the mouse; a plain wheel scrolls."""
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            self.zoom(1.0015 ** event.angleDelta().y())
            event.accept()
        else:
            super().wheelEvent(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        """+/- zoom; arrows move between nodes; Enter picks top, Shift+Enter base."""
        key = int(event.key())
        if key in (int(Qt.Key.Key_Plus), int(Qt.Key.Key_Equal)):
            self.zoom_in()
        elif key == int(Qt.Key.Key_Minus):
            self.zoom_out()
        elif key in _ARROWS and self.nodes:
            self.set_current(self._neighbour(_ARROWS[key]))
        elif key in (int(Qt.Key.Key_Return), int(Qt.Key.Key_Enter)) and self.current is not None:
            if not self.locked:
                shift = event.modifiers() & Qt.KeyboardModifier.ShiftModifier
                (self.base_chosen if shift else self.top_chosen).emit(self.current)
        else:
            super().keyPressEvent(event)
            return
        event.accept()

    def _neighbour(self, direction: tuple[int, int]) -> str:
        """The nearest node in ``direction`` (dx, dy) from the current one, or the first node."""
        if self.current not in self.nodes:
            return next(iter(self.nodes))
        here = self.nodes[self.current].pos()
        best: tuple[float, str] | None = None
        for path, item in self.nodes.items():
            delta = item.pos() - here
            along = delta.x() * direction[0] + delta.y() * direction[1]
            if path == self.current or along <= 0:
                continue
            across = abs(delta.x() * direction[1]) + abs(delta.y() * direction[0])
            score = along + 3 * across
            if best is None or score < best[0]:
                best = (score, path)
        return best[1] if best is not None else self.current

    def focusInEvent(self, event: QFocusEvent) -> None:
        """Show the focus ring on the current node."""
        super().focusInEvent(event)
        if self.current is None and self.nodes:
            self.current = next(iter(self.nodes))
        self.set_current(self.current)

    def focusOutEvent(self, event: QFocusEvent) -> None:
        """Hide the focus ring."""
        super().focusOutEvent(event)
        if self.current in self.nodes:
            self.nodes[self.current].set_focused(False)

    # -- picking ---------------------------------------------------------------------------------

    def _node_at(self, pos: QPoint) -> NodeItem | None:
        for item in self.items(pos):
            if isinstance(item, NodeItem):
                return item
        return None

    def mousePressEvent(self, event: QMouseEvent) -> None:
        """A left click on a node picks it; anywhere else starts a pan."""
        node = self._node_at(event.position().toPoint())
        if node is not None and event.button() == Qt.MouseButton.LeftButton:
            self.setFocus(Qt.FocusReason.MouseFocusReason)
            self.set_current(node.layer.path)
            if self.locked:
                event.accept()
                return
            if event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
                self.base_chosen.emit(node.layer.path)
            else:
                self.top_chosen.emit(node.layer.path)
            event.accept()
            return
        super().mousePressEvent(event)

    def contextMenuEvent(self, event: QContextMenuEvent) -> None:
        """Make top / Commit into this layer / Copy path / Delete snapshot NAME…."""
        node = self._node_at(event.pos())
        if node is None or self.locked:
            return
        self.context_menu_for(node.layer.path).exec(event.globalPos())

    def context_menu_for(self, path: str) -> QMenu:
        """A layer card's context menu (tests read its actions without opening it)."""
        node = self.nodes[path]
        menu = QMenu(self)
        as_top = QAction("Make this layer top", menu)
        as_top.triggered.connect(lambda: self.top_chosen.emit(path))
        as_base = QAction("Commit into this layer", menu)
        as_base.triggered.connect(lambda: self.base_chosen.emit(path))
        copy = QAction("Copy path", menu)
        copy.triggered.connect(lambda: QGuiApplication.clipboard().setText(path))
        menu.addActions([as_top, as_base])
        menu.addSeparator()
        menu.addAction(copy)
        snapshots = snapshot_actions(node.layer, menu, self.snapshot_delete_requested.emit)
        if snapshots:
            menu.addSeparator()
            menu.addActions(snapshots)
        return menu
