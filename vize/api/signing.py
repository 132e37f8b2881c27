"""Signed, expiring image URLs: ``img_path`` and ``thumb_img_path`` work by URL alone.

Ximilar's client (``Image.download``) fetches ``img_path`` without its token, as it would a
CDN link. The link carries a signature of (image id, kind) made with the app's secret, valid
for ``image_url_ttl_seconds``; without a valid one the file is served to its owner only.
"""

from __future__ import annotations

from typing import Literal

from itsdangerous import BadSignature, URLSafeTimedSerializer

Kind = Literal["file", "thumb"]


class ImageLinks:
    def __init__(self, secret: str | bytes, ttl_seconds: int) -> None:
        # A salt of its own: an image signature is never a session cookie, nor the reverse.
        self._serializer = URLSafeTimedSerializer(secret, salt="vize-image-url")
        self.ttl = ttl_seconds

    def sign(self, image_id: str, kind: Kind) -> str:
        return self._serializer.dumps([image_id, kind])

    def valid(self, token: str, image_id: str, kind: Kind) -> bool:
        try:  # SignatureExpired is a BadSignature
            data = self._serializer.loads(token, max_age=self.ttl)
        except BadSignature:
            return False
        return bool(data == [image_id, kind])
