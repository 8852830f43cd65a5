"""The kiosk's touch screen (Kivy): the only package of ours that imports Kivy.

`kiosk.ui.app.run_kiosk` is the entry point; `kiosk_app` routes inputs and holds the
station's state, `presenter` turns the session's outcomes into screens and speech,
`screens` + `kv/*.kv` are the screens (one .kv each, loaded when first needed), and
`pilot` drives a running kiosk for tests, screenshots and benchmarks. The modules
without Kivy (worker, wedge, announcer, receipts, theme) are plain Python, testable
with no screen.
"""
