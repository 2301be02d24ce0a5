"""The image graph drawn with QGraphicsScene/View: nodes, overlay -> backing edges, zoom and pan."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QPoint, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import (
    QAction,
    QBrush,
    QContextMenuEvent,
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
from backchain.ui.graph_layout import layout
from backchain.ui.node_item import NODE_HEIGHT, NODE_WIDTH, NodeItem

COLUMN_STEP = NODE_WIDTH + 56
ROW_STEP = NODE_HEIGHT + 44
MIN_SCALE, MAX_SCALE = 0.05, 4.0


class EdgeItem(QGraphicsItem):
    """An arrow from an overlay down to its backing file."""

    def __init__(self, overlay: NodeItem, backing: NodeItem) -> None:
        super().__init__()
        self.setZValue(-1)
        start = overlay.pos() + QPointF(NODE_WIDTH / 2, NODE_HEIGHT)
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

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("chainView")
        self.setAccessibleName("Backing chain graph")
        self.setToolTip(
            "Click a layer to make it top; Shift+click or right-click to commit into it. "
            "Ctrl+wheel zooms, drag pans."
        )
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

    def _placeholder(self) -> None:
        text = QGraphicsTextItem(
            "Open an image (Ctrl+O), drop one here, or try the demo (File → Open demo)."
        )
        text.setDefaultTextColor(self.palette().color(QPalette.ColorRole.PlaceholderText))
        self.scene().addItem(text)

    def set_graph(self, graph: ImageGraph | None, focus: str | None = None) -> None:
        """Show ``graph``; when only the layers' data changed, keep the positions and the zoom."""
        old = self._graph
        self._graph = graph
        if graph is not None and old is not None and set(graph.paths) == set(self.nodes):
            same_edges = all(graph.backing_of(p) == old.backing_of(p) for p in graph.paths)
            if same_edges:
                for path, item in self.nodes.items():
                    item.set_layer(graph.layer(path), active=graph.is_active(path))
                return
        scene = self.scene()
        scene.clear()
        self.nodes = {}
        if graph is None:
            self._placeholder()
            return
        slots = layout(graph, focus)
        for path, slot in slots.items():
            item = NodeItem(graph.layer(path), active=graph.is_active(path))
            item.setPos(slot.column * COLUMN_STEP, -slot.row * ROW_STEP)
            scene.addItem(item)
            self.nodes[path] = item
        for overlay, backing in graph.edges:
            scene.addItem(EdgeItem(self.nodes[overlay], self.nodes[backing]))
        scene.setSceneRect(scene.itemsBoundingRect().adjusted(-40, -40, 40, 40))
        self.fit()

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
        """+ and - zoom even without the menu shortcuts' modifiers."""
        if event.key() in (Qt.Key.Key_Plus, Qt.Key.Key_Equal):
            self.zoom_in()
        elif event.key() == Qt.Key.Key_Minus:
            self.zoom_out()
        else:
            super().keyPressEvent(event)

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
            if event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
                self.base_chosen.emit(node.layer.path)
            else:
                self.top_chosen.emit(node.layer.path)
            event.accept()
            return
        super().mousePressEvent(event)

    def contextMenuEvent(self, event: QContextMenuEvent) -> None:
        """Make top / Commit into this layer / Copy path."""
        node = self._node_at(event.pos())
        if node is None:
            return
        path = node.layer.path
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
        menu.exec(event.globalPos())
