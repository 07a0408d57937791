"""What a window manager does to the desktop app's window, for the end-to-end test.

    python3 desktop-window.py wait viewable|unmapped TITLE   poll (30 s) until the window is so
    python3 desktop-window.py close TITLE                     send WM_DELETE_WINDOW (the close button)

Plain libX11 through ctypes, so nothing beyond Debian's python3 and the X libraries the app
already needs. Node cannot speak X11 by itself; WebDriver's "close window" kills the app
instead of asking it, so it cannot show what the close button does.
"""

import ctypes
import sys
import time

xlib = ctypes.cdll.LoadLibrary("libX11.so.6")
Display = ctypes.c_void_p
Window = ctypes.c_ulong
xlib.XOpenDisplay.restype = Display
xlib.XDefaultRootWindow.argtypes = [Display]
xlib.XDefaultRootWindow.restype = Window
xlib.XInternAtom.argtypes = [Display, ctypes.c_char_p, ctypes.c_int]
xlib.XInternAtom.restype = ctypes.c_ulong
xlib.XQueryTree.argtypes = [Display, Window, ctypes.POINTER(Window), ctypes.POINTER(Window),
                            ctypes.POINTER(ctypes.POINTER(Window)), ctypes.POINTER(ctypes.c_uint)]
xlib.XFetchName.argtypes = [Display, Window, ctypes.POINTER(ctypes.c_char_p)]
xlib.XFree.argtypes = [ctypes.c_void_p]


class XWindowAttributes(ctypes.Structure):
    _fields_ = [("x", ctypes.c_int), ("y", ctypes.c_int), ("width", ctypes.c_int), ("height", ctypes.c_int),
                ("border_width", ctypes.c_int), ("depth", ctypes.c_int), ("visual", ctypes.c_void_p),
                ("root", Window), ("class_", ctypes.c_int), ("bit_gravity", ctypes.c_int),
                ("win_gravity", ctypes.c_int), ("backing_store", ctypes.c_int),
                ("backing_planes", ctypes.c_ulong), ("backing_pixel", ctypes.c_ulong),
                ("save_under", ctypes.c_int), ("colormap", ctypes.c_ulong), ("map_installed", ctypes.c_int),
                ("map_state", ctypes.c_int), ("all_event_masks", ctypes.c_long),
                ("your_event_mask", ctypes.c_long), ("do_not_propagate_mask", ctypes.c_long),
                ("override_redirect", ctypes.c_int), ("screen", ctypes.c_void_p)]


class ClientMessage(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("serial", ctypes.c_ulong), ("send_event", ctypes.c_int),
                ("display", Display), ("window", Window), ("message_type", ctypes.c_ulong),
                ("format", ctypes.c_int), ("l", ctypes.c_long * 5)]


class XEvent(ctypes.Union):
    _fields_ = [("xclient", ClientMessage), ("pad", ctypes.c_long * 24)]


xlib.XGetWindowAttributes.argtypes = [Display, Window, ctypes.POINTER(XWindowAttributes)]
xlib.XSendEvent.argtypes = [Display, Window, ctypes.c_int, ctypes.c_long, ctypes.POINTER(XEvent)]
xlib.XSync.argtypes = [Display, ctypes.c_int]

MAP_STATES = {0: "unmapped", 1: "unviewable", 2: "viewable"}

# Windows come and go while the tree is walked (GTK's short-lived ones): an error about a window
# that no longer exists is expected, and must not end the process (Xlib's default handler would).
X_ERROR_HANDLER = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)(lambda display, event: 0)
xlib.XSetErrorHandler(X_ERROR_HANDLER)
display = xlib.XOpenDisplay(None)
if not display:
    sys.exit("cannot open the X display")


def children(window):
    root, parent = Window(), Window()
    kids = ctypes.POINTER(Window)()
    count = ctypes.c_uint()
    if not xlib.XQueryTree(display, window, ctypes.byref(root), ctypes.byref(parent), ctypes.byref(kids),
                           ctypes.byref(count)):
        return []
    out = [kids[i] for i in range(count.value)]
    if kids:
        xlib.XFree(kids)
    return out


def attributes(window):
    attrs = XWindowAttributes()
    if not xlib.XGetWindowAttributes(display, window, ctypes.byref(attrs)):
        attrs.map_state = -1  # gone
    return attrs


def find(title):
    """The largest window named `title` (GTK also names its small leader window)."""
    best = None
    stack = [xlib.XDefaultRootWindow(display)]
    while stack:
        window = stack.pop()
        stack.extend(children(window))
        name = ctypes.c_char_p()
        if xlib.XFetchName(display, window, ctypes.byref(name)) and name.value:
            if name.value.decode() == title:
                size = attributes(window).width * attributes(window).height
                if best is None or size > best[0]:
                    best = (size, window)
    return best[1] if best else None


def state(title):
    window = find(title)
    return MAP_STATES.get(attributes(window).map_state) if window else "absent"


def main():
    command = sys.argv[1]
    if command == "wait":
        want, title = sys.argv[2], sys.argv[3]
        deadline = time.monotonic() + 30
        while (now := state(title)) != want:
            if time.monotonic() > deadline:
                sys.exit(f"window {title!r} is {now}, not {want}")
            time.sleep(0.05)
        print(f"window {title!r} is {want}")
    elif command == "close":
        title = sys.argv[2]
        window = find(title)
        if not window:
            sys.exit(f"no window {title!r}")
        event = XEvent()
        event.xclient.type = 33  # ClientMessage
        event.xclient.window = window
        event.xclient.message_type = xlib.XInternAtom(display, b"WM_PROTOCOLS", 0)
        event.xclient.format = 32
        event.xclient.l[0] = xlib.XInternAtom(display, b"WM_DELETE_WINDOW", 0)
        xlib.XSendEvent(display, window, 0, 0, ctypes.byref(event))
        # A round trip, not just a flush: this process exits next, and a request still in the
        # socket when the connection closes may never reach the app (seen under load).
        xlib.XSync(display, 0)
        print(f"asked window {title!r} to close")
    else:
        sys.exit(f"unknown command {command}")


main()
