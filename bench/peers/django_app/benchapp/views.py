"""The upload view: request.FILES['file'], AES-256-CBC with a fresh IV, the
encrypted file written to the storage dir, a JSON answer.

It keeps the file's IV in front of the ciphertext and, like the app it
reproduces, has no MAC and no plaintext digest.
"""
import os
import uuid

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from django.conf import settings
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST


@csrf_exempt
@require_POST
def upload(request):
    upload_file = request.FILES.get("file")
    if upload_file is None:
        return JsonResponse({"status": "error", "message": "No file."}, status=400)
    iv = os.urandom(16)
    encryptor = Cipher(algorithms.AES(settings.UPLOAD_KEY), modes.CBC(iv)).encryptor()
    padder = padding.PKCS7(128).padder()
    path = os.path.join(settings.UPLOAD_STORAGE_DIR, uuid.uuid4().hex + ".enc")
    with open(path, "wb") as out:
        out.write(iv)
        for chunk in upload_file.chunks():
            out.write(encryptor.update(padder.update(chunk)))
        out.write(encryptor.update(padder.finalize()) + encryptor.finalize())
    return JsonResponse({"status": "ok", "message": "File uploaded and encrypted."})
