"""``GET /files/{name}``: the generated images (and video stand-ins), object-storage style.

URLs carry ``Expires`` (a past one answers 403 ``AccessDenied`` / ``Request has
expired.``) and, when a generation request asked for image faults, ``regen_fault``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from regen.sim._errors import HTML, XML, file_error, not_found
from regen.sim._faults import FaultSpec

if TYPE_CHECKING:
    from regen.sim._http import Ctx

PNG = b"image/png"
GIF = b"image/gif"

# What "downloads that succeed as ~330-byte XML files" look like.
_FAKE_XML = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error>\n  <Code>AccessDenied</Code>\n'
    b"  <Message>You have no right to access this object because of bucket acl.</Message>\n"
    b"  <RequestId>5C3D8E7F9A1B2C3D4E5F6A7B</RequestId>\n"
    b"  <HostId>regen-sim.oss-cn-beijing.aliyuncs.com</HostId>\n"
    b"  <EC>0003-00000001</EC>\n</Error>\n"
)
_FAKE_HTML = (
    b"<!DOCTYPE html><html><head><title>Image not available</title></head>"
    b"<body><h1>403 Forbidden</h1><p>The requested image is not available.</p></body></html>"
)


def spoil(data: bytes, spec: FaultSpec) -> tuple[bytes, bytes]:
    """Image bytes and content type as ``fake_image`` / ``truncated_image`` leave them.

    ``fake_image`` gives ~330 bytes of XML labelled ``image/png`` (``:xml`` labels it
    ``application/xml``, ``:html`` gives an HTML page); ``truncated_image`` here cuts the
    PNG in half (the download route's default instead sends fewer bytes than announced).
    """
    if spec.name == "fake_image":
        if spec.arg == "html":
            return _FAKE_HTML, HTML
        return _FAKE_XML, XML if spec.arg == "xml" else PNG
    return data[: max(1, len(data) // 2)], PNG


def identify(ctx: Ctx) -> None:
    ref = ctx.state.files.get(ctx.param)
    if ref is not None:
        ctx.ident.origin_prompt = ref.prompt


async def download(ctx: Ctx) -> None:
    state = ctx.state
    ref = state.files.get(ctx.param)
    if ref is None:
        await ctx.reply(not_found("file", "", request_id=ctx.request_id))
        return
    expires_text = ctx.query("Expires")
    expires = int(expires_text) if expires_text and expires_text.lstrip("-").isdigit() else None
    expired = expires is not None and expires < time.time()
    if ctx.fault("url_expired") or expired:
        if expired and "url_expired" not in ctx.plan:
            state.stats.fault(ctx.route, ctx.prompt, "url_expired")
            ctx.record("url_expired")
        await ctx.reply(
            file_error("url_expired", ctx.request_id, expires=expires or int(time.time()))
        )
        return
    data = await state.images.get(ref.kind, ref.prompt, ref.width, ref.height, ref.variant)
    content_type = GIF if ref.kind == "gif" else PNG
    fake = ctx.fault("fake_image")
    if fake is not None:
        data, content_type = spoil(data, fake)
    truncated = ctx.fault("truncated_image")
    if truncated is not None and truncated.arg == "png":
        data, content_type = spoil(data, truncated)
    elif truncated is not None:
        await ctx.start(200, content_type, ((b"content-length", str(len(data)).encode()),))
        await ctx.write(data[: len(data) // 2])
        await ctx.cut()
        return
    await ctx.respond(200, data, content_type, ((b"cache-control", b"max-age=86400"),))
