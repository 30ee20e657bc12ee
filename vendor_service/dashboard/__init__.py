"""``/dashboard``: the budget accounting report as an HTML page the vendor serves itself.

The page (``static/``: HTML, CSS and JavaScript, no external asset, charts drawn as inline
SVG) holds no data. It asks for a token in a small form, keeps it in the tab's
``sessionStorage`` (gone when the tab closes; never in a URL, a cookie or a log) and reads
``GET /dashboard/api/usage`` with ``Authorization: Bearer <token>``, under the API's own
access rules: the admin token sees every key, an API key only its own.
"""

from vendor_service.dashboard.routes import router

__all__ = ["router"]
