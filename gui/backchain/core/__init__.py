"""Pure data and rules: the image graph, extents and the commit planner."""
