"""The built-in web UI: static HTML, CSS and JavaScript modules in `static/`, served by `rtpm.api.routes.ui`."""
