from django.urls import path

from . import views

app_name = "catalog"

urlpatterns = [
    path("", views.catalog_home, name="home"),
    path("garments/<int:pk>/", views.garment_detail, name="garment"),
]

merchant_urlpatterns = (
    [
        path("", views.merchant_home, name="home"),
        path("garments/new/", views.merchant_garment_create, name="garment_create"),
        path("garments/<int:pk>/edit/", views.merchant_garment_edit, name="garment_edit"),
        path("garments/<int:pk>/delete/", views.merchant_garment_delete, name="garment_delete"),
        path("garments/<int:pk>/mask/", views.merchant_garment_mask, name="garment_mask"),
        path(
            "garments/<int:pk>/mask.png",
            views.merchant_garment_mask_file,
            name="garment_mask_file",
        ),
        path("garments/<int:pk>/shots/", views.merchant_garment_shots, name="garment_shots"),
        path(
            "garments/<int:pk>/shots/photo/",
            views.merchant_garment_photo_shot,
            name="garment_photo_shot",
        ),
        path("garments/<int:pk>/gallery/", views.merchant_garment_gallery, name="garment_gallery"),
        path(
            "garments/<int:pk>/gallery/live/",
            views.merchant_garment_gallery_live,
            name="garment_gallery_live",
        ),
        path(
            "garments/<int:pk>/results/<int:result_pk>/publish/",
            views.merchant_result_publish,
            name="result_publish",
        ),
        path(
            "garments/<int:pk>/jobs/<uuid:job_id>/discard/",
            views.merchant_job_discard,
            name="job_discard",
        ),
        path(
            "garments/<int:pk>/jobs/<uuid:job_id>/rerun/",
            views.merchant_job_rerun,
            name="job_rerun",
        ),
    ],
    "merchant",
)
